package wasmhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTPCallRequest is a proxy_http_call request. Headers carry the
// pseudo-headers :method, :path and :authority, as in Envoy.
type HTTPCallRequest struct {
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
	Timeout  time.Duration
}

// HTTPCallResponse is what the guest reads in proxy_on_http_call_response.
// Headers include ":status".
type HTTPCallResponse struct {
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
}

// HTTPCaller performs proxy_http_call for a plugin. The gateway implements it
// with its clusters; NetHTTPCaller is a plain net/http implementation.
type HTTPCaller interface {
	// HasCluster reports whether cluster is known; unknown clusters make the
	// hostcall fail with BadArgument, as in Envoy.
	HasCluster(cluster string) bool
	// Call performs the request. An error reaches the guest as a response with
	// no headers, no body and no trailers (Envoy's behaviour on failure).
	Call(ctx context.Context, cluster string, req HTTPCallRequest) (HTTPCallResponse, error)
}

// NetHTTPCaller sends calls with net/http to the base URL of each cluster.
type NetHTTPCaller struct {
	// Clusters maps a cluster name to a base URL such as http://127.0.0.1:8080.
	Clusters map[string]string
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
}

var _ HTTPCaller = (*NetHTTPCaller)(nil)

// HasCluster implements HTTPCaller.
func (c *NetHTTPCaller) HasCluster(cluster string) bool {
	_, ok := c.Clusters[cluster]
	return ok
}

// Call implements HTTPCaller.
func (c *NetHTTPCaller) Call(ctx context.Context, cluster string, req HTTPCallRequest) (HTTPCallResponse, error) {
	base, ok := c.Clusters[cluster]
	if !ok {
		return HTTPCallResponse{}, fmt.Errorf("http call: unknown cluster %q", cluster)
	}
	h := &Headers{Pairs: req.Headers}
	method, _ := h.Get(":method")
	path, _ := h.Get(":path")
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	hr, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, bytes.NewReader(req.Body))
	if err != nil {
		return HTTPCallResponse{}, fmt.Errorf("http call to %s: %w", cluster, err)
	}
	for _, p := range req.Headers {
		switch p[0] {
		case ":method", ":path", ":scheme":
		case ":authority":
			hr.Host = p[1]
		default:
			hr.Header.Add(p[0], p[1])
		}
	}
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hr)
	if err != nil {
		return HTTPCallResponse{}, fmt.Errorf("http call to %s: %w", cluster, err)
	}
	defer resp.Body.Close()
	out, err := ReadHTTPCallResponse(resp)
	if err != nil {
		return HTTPCallResponse{}, fmt.Errorf("http call to %s: read body: %w", cluster, err)
	}
	return out, nil
}

// ReadHTTPCallResponse reads resp as a guest sees it in
// proxy_on_http_call_response: ":status" and the headers with lowercase
// names, the body (at most 16 MiB) and the trailers. For HTTPCaller
// implementations; the caller closes resp.Body.
func ReadHTTPCallResponse(resp *http.Response) (HTTPCallResponse, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return HTTPCallResponse{}, err
	}
	h := Headers{Pairs: [][2]string{{":status", strconv.Itoa(resp.StatusCode)}}}
	h.AddHTTP(resp.Header)
	var t Headers
	t.AddHTTP(resp.Trailer)
	return HTTPCallResponse{Headers: h.Pairs, Body: body, Trailers: t.Pairs}, nil
}
