// Package httpget is the GET that the CLI's checks, the demo, the tools and
// the test harness make: bound to a context, through a chosen client (a TLS
// one, one with a timeout). http.Client.Get takes no context, and
// http.NewRequestWithContext plus Do was written out at every call.
package httpget

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Get sends a GET of url through c (http.DefaultClient when nil), bound to
// ctx. Any status is a response, not an error; the caller closes the body.
func Get(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if c == nil {
		c = http.DefaultClient
	}
	return c.Do(req)
}

// Text is Get for a caller that judges the answer: its status and body (the
// first 4 MiB). A request that fails is status 0 with the error's text as
// the body.
func Text(ctx context.Context, c *http.Client, url string) (int, string) {
	resp, err := Get(ctx, c, url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b)
}

// OK is Get that wants 200 OK: another status closes the body and is the
// error "<url>: <status>". The caller closes the body of a 200.
func OK(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	resp, err := Get(ctx, c, url)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp, nil
}
