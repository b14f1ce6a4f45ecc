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
)

// TestSlowResponsesStreamToTheClient: the part of a response that has
// arrived reaches the client while the upstream is still writing — headers
// and first bytes, for a response of known length and for a chunked one —
// instead of waiting in the gateway's write buffer for the rest.
func TestSlowResponsesStreamToTheClient(t *testing.T) {
	release := make(chan struct{})
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/known" {
			w.Header().Set("Content-Length", "10")
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "world")
	}))
	t.Cleanup(up.Close)
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
