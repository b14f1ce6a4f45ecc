package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// callout implements wasmhost.HTTPCaller with the gateway's clusters, so a
// filter's dispatch_http_call to "mw-audit" or "mw-otlp" goes to the
// endpoints the plane sent for that cluster, with its TLS and pool.
type callout Gateway

var _ wasmhost.HTTPCaller = (*callout)(nil)

// HasCluster implements wasmhost.HTTPCaller.
func (c *callout) HasCluster(name string) bool {
	m := (*Gateway)(c).model.Load()
	return m != nil && m.clusters[name] != nil
}

// Call implements wasmhost.HTTPCaller.
func (c *callout) Call(ctx context.Context, name string, req wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, error) {
	m := (*Gateway)(c).model.Load()
	if m == nil || m.clusters[name] == nil {
		return wasmhost.HTTPCallResponse{}, fmt.Errorf("http call: unknown cluster %q", name)
	}
	cl := m.clusters[name]
	ep := cl.pick(time.Now().UnixNano(), nil)
	if ep == nil {
		return wasmhost.HTTPCallResponse{}, fmt.Errorf("http call to %s: %w", name, errNoHealthy)
	}
	h := &wasmhost.Headers{Pairs: req.Headers}
	method, _ := h.Get(":method")
	path, _ := h.Get(":path")
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	hr, err := http.NewRequestWithContext(ctx, method, cl.tr.scheme+"://"+ep.addr+path, bytes.NewReader(req.Body))
	if err != nil {
		return wasmhost.HTTPCallResponse{}, fmt.Errorf("http call to %s: %w", name, err)
	}
	for _, p := range req.Headers {
		switch {
		case p[0] == ":authority":
			hr.Host = p[1]
		case strings.HasPrefix(p[0], ":"):
		default:
			hr.Header.Add(p[0], p[1])
		}
	}
	ep.active.Add(1)
	defer ep.active.Add(-1)
	tr := cl.tr.h1
	if tr == nil {
		tr = cl.tr.h2
	}
	resp, err := tr.RoundTrip(hr)
	if err != nil {
		cl.observe(ep, 0, err, time.Now())
		return wasmhost.HTTPCallResponse{}, fmt.Errorf("http call to %s: %w", name, err)
	}
	defer resp.Body.Close()
	out, err := wasmhost.ReadHTTPCallResponse(resp)
	if err != nil {
		return wasmhost.HTTPCallResponse{}, fmt.Errorf("http call to %s: %w", name, err)
	}
	cl.observe(ep, resp.StatusCode, nil, time.Now())
	return out, nil
}
