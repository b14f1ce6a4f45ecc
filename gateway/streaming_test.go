package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
)

// TestSlowResponsesStreamToTheClient: the part of a response that has
// arrived reaches the client while the upstream is still writing — headers
// and first bytes, for a response of known length and for a chunked one —
// instead of waiting in the gateway's write buffer for the rest.
func TestSlowResponsesStreamToTheClient(t *testing.T) {
	up, releaseAll := slowUpstream(t)
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-stream", nil)
	plane.set("gw-stream", httpListener(t, gw.port(), "r"), routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo("up")}),
		edsCluster("up", nil), cla("up", lbEndpoint(up.Listener.Addr().String(), 0)))
	eventually(t, 30*time.Second, "readiness", gw.g.Ready)

	for _, path := range []string{"/known", "/chunked"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, gw.url+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Headers and the first five bytes must arrive while the
			// upstream still holds the rest back.
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("no response headers while the upstream holds the body: %v", err)
			}
			defer resp.Body.Close()
			first := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "hello" {
				t.Fatalf("first bytes %q, %v: want %q before the upstream finishes", first, err, "hello")
			}
		})
	}
	releaseAll()
}

// TestNativeFiltersStreamResponses: a response body none of the filters
// reads goes downstream as it arrives when the filters run natively and say
// they ignore it (the official dye filter does); the same filter in wazero
// has its body callbacks called, so a small response is read whole through
// them first.
func TestNativeFiltersStreamResponses(t *testing.T) {
	dye := officialDye(t)
	ms := startModuleServer(t)
	ms.put("/dye.wasm", dye)
	up, releaseAll := slowUpstream(t)
	plane := startPlane(t)
	for _, tc := range []struct {
		node    string
		off     bool
		streams bool
	}{{"gw-stream-native", false, true}, {"gw-stream-wasm", true, false}} {
		t.Run(tc.node, func(t *testing.T) {
			gw := startGateway(t, plane, tc.node, func(c *Config) { c.WasmNativeOff = tc.off })
			plane.set(tc.node, httpListener(t, gw.port(), "r", "dye"), routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo("up")}),
				wasmFilterExt(t, "dye", "dye", ms.URL+"/dye.wasm", modulefetch.Sum(dye), 0, `{"rules":[]}`),
				edsCluster("up", nil), cla("up", lbEndpoint(up.Listener.Addr().String(), 0)))
			eventually(t, 90*time.Second, "readiness", gw.g.Ready)
			type first struct {
				b   string
				err error
			}
			got := make(chan first, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.url+"/", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					got <- first{err: err}
					return
				}
				defer resp.Body.Close()
				b := make([]byte, 5)
				_, err = io.ReadFull(resp.Body, b)
				got <- first{b: string(b), err: err}
				_, _ = io.Copy(io.Discard, resp.Body)
			}()
			select {
			case f := <-got:
				if !tc.streams {
					t.Fatalf("first bytes %q (%v) before the upstream finished: the body skipped the wasm filter's callbacks", f.b, f.err)
				}
				if f.err != nil || f.b != "hello" {
					t.Fatalf("first bytes %q, %v", f.b, f.err)
				}
			case <-time.After(map[bool]time.Duration{true: 10 * time.Second, false: 500 * time.Millisecond}[tc.streams]):
				if tc.streams {
					t.Fatal("no bytes while the upstream holds the rest: the body waited for the native filter chain")
				}
				// wasm: the body is read whole through the filter; let the
				// upstream finish and check the whole answer arrives.
				releaseAll()
				if f := <-got; f.err != nil || f.b != "hello" {
					t.Fatalf("first bytes %q, %v after the upstream finished", f.b, f.err)
				}
			}
		})
	}
}

// slowUpstream answers "hello", flushes it, and holds "world" back until
// release is called (or the request ends). The response has a
// Content-Length of 10 except on /chunked.
func slowUpstream(t *testing.T) (up *httptest.Server, release func()) {
	held := make(chan struct{})
	release = sync.OnceFunc(func() { close(held) })
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/chunked" {
			w.Header().Set("Content-Length", "10")
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "world")
	}))
	t.Cleanup(up.Close)
	t.Cleanup(release) // runs first: Close waits for the held handlers
	return up, release
}
