package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// TestResponseBodiesThroughFilters: a small response of known length is
// filtered whole and answered with the filtered length in one piece (the
// conformance guest appends " +tail" at end of stream); a large one streams
// chunked; an upstream that ends a small body short gets a 502, not a
// truncated 200.
func TestResponseBodiesThroughFilters(t *testing.T) {
	wasm := testGuest(t, "conformance")
	ms := startModuleServer(t)
	ms.put("/conf.wasm", wasm)
	large := strings.Repeat("z", smallResponseBody+1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		case "/large":
			w.Header().Set("Content-Length", strconv.Itoa(len(large)))
			_, _ = io.WriteString(w, large)
		case "/short":
			// Promise 10 bytes, send 5, and drop the connection.
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "hello")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(up.Close)
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-resp-body", nil)
	rc := routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo("up")})
	plane.set("gw-resp-body", httpListener(t, gw.port(), "r", "conf"), rc,
		wasmExt(t, "conf", ms.URL+"/conf.wasm", modulefetch.Sum(wasm), false),
		edsCluster("up", nil), cla("up", lbEndpoint(up.Listener.Addr().String(), 0)))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	get := func(t *testing.T, path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(gw.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: reading the body: %v", path, err)
		}
		return resp, string(b)
	}
	t.Run("small body: filtered whole, with its new length", func(t *testing.T) {
		resp, body := get(t, "/small")
		if resp.StatusCode != 200 || body != "hello +tail" {
			t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "hello +tail")
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Fatalf("Content-Length %d, Transfer-Encoding %v: want %d and not chunked", resp.ContentLength, resp.TransferEncoding, len(body))
		}
	})
	t.Run("large body: streamed chunked", func(t *testing.T) {
		resp, body := get(t, "/large")
		if resp.StatusCode != 200 || body != large+" +tail" {
			t.Fatalf("got %d, %d bytes, want 200 and %d", resp.StatusCode, len(body), len(large)+6)
		}
		if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("Content-Length %d, Transfer-Encoding %v: want a chunked stream", resp.ContentLength, resp.TransferEncoding)
		}
	})
	t.Run("small body cut short upstream: 502", func(t *testing.T) {
		if resp, body := get(t, "/short"); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
		}
	})
}

// TestCopyBuffersLendWholeBuffers: the reverse proxy's copy buffers are
// always its full size; a buffer of another size handed back is dropped,
// never lent again.
func TestCopyBuffersLendWholeBuffers(t *testing.T) {
	var b copyBuffers
	b.Put(make([]byte, 10))
	b.Put(make([]byte, 10, copyBufferSize*2))
	for range 3 {
		buf := b.Get()
		if len(buf) != copyBufferSize || cap(buf) != copyBufferSize {
			t.Fatalf("lent a buffer of len %d cap %d, want %d", len(buf), cap(buf), copyBufferSize)
		}
		b.Put(buf[:5])
	}
}

// TestApplyRequestHeadersPath: a :path a filter rewrote becomes the
// request's path and query; an unchanged one leaves the URL as it was
// (raw, escaped form included).
func TestApplyRequestHeadersPath(t *testing.T) {
	r := httptest.NewRequest("GET", "http://gw/a%2Fb/c?q=1", nil)
	h, path := requestToHeaders(r)
	if path != "/a%2Fb/c?q=1" {
		t.Fatalf(":path given to the filters = %q", path)
	}
	h.Set("x-mesh-lane", "canary")
	applyRequestHeaders(r, h, path)
	if r.URL.Path != "/a/b/c" || r.URL.RawPath != "/a%2Fb/c" || r.URL.RawQuery != "q=1" || r.Header.Get("X-Mesh-Lane") != "canary" {
		t.Fatalf("unchanged :path: got path %q raw %q query %q, lane %q", r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Header.Get("X-Mesh-Lane"))
	}
	h.Set(":path", "/v2/x?lane=canary")
	applyRequestHeaders(r, h, path)
	if r.URL.Path != "/v2/x" || r.URL.RawPath != "" || r.URL.RawQuery != "lane=canary" {
		t.Fatalf("rewritten :path: got path %q raw %q query %q", r.URL.Path, r.URL.RawPath, r.URL.RawQuery)
	}
}
