package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
)

// TestBodiesThroughFilters streams request bodies through the conformance
// guest: replaced, buffered to the end, answered locally, and refused beyond
// the buffer bound.
func TestBodiesThroughFilters(t *testing.T) {
	wasm := testGuest(t, "conformance")
	ms := startModuleServer(t)
	ms.put("/conf.wasm", wasm)
	var got atomic.Value
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
		_, _ = w.Write(b)
	}))
	t.Cleanup(echo.Close)
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-body", func(c *Config) { c.MaxBufferBytes = 4 << 10 })
	rc := routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo("echo")})
	plane.set("gw-body", httpListener(t, gw.port(), "r", "conf"), rc,
		wasmExt(t, "conf", ms.URL+"/conf.wasm", modulefetch.Sum(wasm), false),
		edsCluster("echo", nil), cla("echo", lbEndpoint(echo.Listener.Addr().String(), 0)))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	post := func(t *testing.T, scenario string, body io.Reader) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", gw.url+"/b", body)
		req.Header.Set("x-test", scenario)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	t.Run("replaced body reaches upstream with its new length", func(t *testing.T) {
		if code, _ := post(t, "body-replace", strings.NewReader("hello")); code != 200 || got.Load() != "replaced" {
			t.Fatalf("status %d, upstream got %q, want replaced", code, got.Load())
		}
	})
	t.Run("body buffered to the end across chunks", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for _, part := range []string{"abc", "def", "ghi"} {
				_, _ = pw.Write([]byte(part))
				time.Sleep(5 * time.Millisecond)
			}
			pw.Close()
		}()
		code, _ := post(t, "body", pr)
		up, _ := got.Load().(string)
		if code != 200 || !strings.HasPrefix(up, "[a") || !strings.Contains(up, "abcdefghi") {
			t.Fatalf("status %d, upstream got %q, want the whole body wrapped by the filter", code, up)
		}
	})
	t.Run("local reply from the body callback", func(t *testing.T) {
		if code, body := post(t, "body-local", strings.NewReader("ping")); code != 200 || body != "echo:ping" {
			t.Fatalf("got %d %q, want the filter's echo", code, body)
		}
	})
	t.Run("buffering beyond the bound is refused", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			// 1 KiB chunks, spaced so the gateway reads them one by one.
			for range 12 {
				if _, err := pw.Write([]byte(strings.Repeat("y", 1<<10))); err != nil {
					return
				}
				time.Sleep(3 * time.Millisecond)
			}
			pw.Close()
		}()
		code, _ := post(t, "body", pr)
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", code)
		}
	})
}
