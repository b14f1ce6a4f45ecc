// Package probe holds the checks tests of a running part make most: an
// HTTP GET whose status and body the test then judges, polling a condition
// until it holds or a bound passes, and the profiles a /debug/pprof/
// endpoint serves. Only tests import it.
package probe

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// Get fetches url and returns its status and body; a transport error fails tb.
func Get(tb testing.TB, url string) (int, []byte) {
	tb.Helper()
	return GetWith(tb, http.DefaultClient, url)
}

// GetWith is Get through client c (TLS, timeouts).
func GetWith(tb testing.TB, c *http.Client, url string) (int, []byte) {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read the body: %v", url, err)
	}
	return resp.StatusCode, b
}

// GetJSON fetches url and, when it answers 200 and v is not nil, decodes
// the body into v (a body that is not JSON fails tb). It returns the status.
func GetJSON(tb testing.TB, url string, v any) int {
	tb.Helper()
	code, b := Get(tb, url)
	if v != nil && code == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			tb.Fatalf("GET %s: %v in %.200s", url, err, b)
		}
	}
	return code
}

// Until calls ok every 20ms until it returns true; after timeout it fails
// tb, saying it was waiting for what.
func Until(tb testing.TB, what string, timeout time.Duration, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
