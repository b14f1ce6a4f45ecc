package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Client sends requests through the gateway as service "payments".
type Client struct {
	GatewayAddr string
	Host        string
	HTTP        *http.Client
}

// NewClient returns a client for the stack's gateway.
func (s *Stack) NewClient() *Client {
	return &Client{GatewayAddr: s.GatewayAddr, Host: "payments", HTTP: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
}

// Reply is one answer through the gateway.
type Reply struct {
	Status int
	Echo   Echo   // set when the upstream answered
	Body   string // raw body (local replies, errors)
	Header http.Header
}

// Do sends one request and decodes the upstream's echo if there is one.
func (c *Client) Do(ctx context.Context, method, path string, hdr map[string]string, body []byte) (Reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.GatewayAddr+path, rd)
	if err != nil {
		return Reply{}, err
	}
	req.Host = c.Host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("%s %s via gateway: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Reply{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	r := Reply{Status: resp.StatusCode, Body: string(raw), Header: resp.Header}
	if resp.Header.Get("x-served-by") != "" {
		if err := json.Unmarshal(raw, &r.Echo); err != nil {
			return r, fmt.Errorf("%s %s: upstream echo: %w", method, path, err)
		}
	}
	return r, nil
}

// Split counts, per upstream version, n requests built by hdr(i).
type Split struct {
	ByVersion map[string]int
	Failed    int
	Lanes     map[string]string // key (e.g. user id) -> lane seen upstream
	Errors    []string
}

// Run sends n GET requests with hdr(i) and counts where they landed. key(i),
// when non-nil, names the sender so stickiness can be checked.
func (c *Client) Run(ctx context.Context, n int, path string, hdr func(i int) map[string]string, key func(i int) string) Split {
	sp := Split{ByVersion: map[string]int{}, Lanes: map[string]string{}}
	for i := range n {
		r, err := c.Do(ctx, http.MethodGet, path, hdr(i), nil)
		if err != nil || r.Status != http.StatusOK {
			sp.Failed++
			if len(sp.Errors) < 5 {
				sp.Errors = append(sp.Errors, fmt.Sprintf("%v status=%d body=%.200s", err, r.Status, r.Body))
			}
			continue
		}
		sp.ByVersion[r.Echo.Version]++
		if key != nil {
			lane := r.Echo.Headers["x-mw-dye"]
			if lane == "" {
				lane = "default"
			}
			sp.Lanes[key(i)] = lane + "@" + r.Echo.Version
		}
	}
	return sp
}
