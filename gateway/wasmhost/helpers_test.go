package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/gateway/internal/guestbuild"
	"github.com/meshwarden/meshwarden/internal/testenv/logsink"
)

// builds caches each test guest's .wasm for the whole test binary run:
// building one takes seconds.
var (
	buildDir string
	builds   *guestbuild.Cache
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmhost-guests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir, builds = dir, guestbuild.New(dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// guest builds testdata/guests/<name> with the standard toolchain:
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
func guest(tb testing.TB, name string) []byte {
	tb.Helper()
	return guestPkg(tb, name, "./testdata/guests/"+name)
}

// guestPkg builds the wasm main package pkg (relative to this directory)
// once per test binary run, cached under key.
func guestPkg(tb testing.TB, key, pkg string) []byte {
	tb.Helper()
	wasm, err := builds.Build(key, pkg)
	if err != nil {
		tb.Fatal(err)
	}
	return wasm
}

// newRuntime returns a compiler-mode runtime with its cache in a temp dir.
func newRuntime(tb testing.TB, cfg RuntimeConfig) *Runtime {
	tb.Helper()
	if cfg.CacheDir == "" {
		// One compilation cache for the whole test binary: each guest is
		// compiled once (≈ 0.5 s), then loaded from disk.
		cfg.CacheDir = filepath.Join(buildDir, "compilation-cache")
	}
	r, err := NewRuntime(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func newPlugin(tb testing.TB, r *Runtime, name string, cfg PluginConfig) *Plugin {
	tb.Helper()
	mod, err := r.Compile(context.Background(), guest(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.Name == "" {
		cfg.Name = name
	}
	return startPlugin(tb, r, mod, cfg)
}

// startPlugin starts a plugin of a compiled module, closed when tb ends.
func startPlugin(tb testing.TB, r *Runtime, mod *Module, cfg PluginConfig) *Plugin {
	tb.Helper()
	p, err := r.NewPlugin(context.Background(), mod, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// upstream is an HTTP server for proxy_http_call on a loopback ephemeral port.
func upstream(tb testing.TB) *NetHTTPCaller {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-upstream", "yes")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "hello %s %s from=%s", r.Method, r.URL.RequestURI(), r.Header.Get("x-from"))
	}))
	tb.Cleanup(srv.Close)
	return &NetHTTPCaller{Clusters: map[string]string{"upstream": srv.URL}}
}

// logSink collects log records for assertions.
type logSink = logsink.Sink

// openStream opens a stream of p with info; a refusal ends the test. The
// caller closes it.
func openStream(tb testing.TB, p *Plugin, info StreamInfo) *Stream {
	tb.Helper()
	s, err := p.NewStream(context.Background(), info)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func reqHeaders(kv ...string) *Headers {
	return NewHeaders(append([]string{":method", "GET", ":path", "/p?q=1", ":authority", "example.test", ":scheme", "http"}, kv...)...)
}

// request runs request headers through a fresh stream and closes it.
func request(tb testing.TB, p *Plugin, info StreamInfo, h *Headers) Result {
	tb.Helper()
	s := openStream(tb, p, info)
	defer s.Close()
	return s.OnRequestHeaders(h, true)
}

// bufferedRequest sends h without end of stream, then the body in two
// chunks, expecting the guest to hold the headers and the first chunk; it
// returns the result of the last chunk.
func bufferedRequest(tb testing.TB, s *Stream, h *Headers, first, last string) Result {
	tb.Helper()
	if res := s.OnRequestHeaders(h, false); res.Action != Buffer || res.Err != nil {
		tb.Fatalf("headers: %v %v", res.Action, res.Err)
	}
	if res := s.OnRequestBody([]byte(first), false); res.Action != Buffer {
		tb.Fatalf("chunk 1: %v", res.Action)
	}
	return s.OnRequestBody([]byte(last), true)
}

// wantGuestReply fails tb unless res is a local reply with the given status
// caused by a guestError of the given kind.
func wantGuestReply(tb testing.TB, res Result, status int, kind string) {
	tb.Helper()
	var ge *guestError
	if res.Action != Reply || res.Reply.Status != status || !errors.As(res.Err, &ge) || ge.Kind != kind {
		tb.Fatalf("want a %d reply for a %q guest error, got %v %+v %v", status, kind, res.Action, res.Reply, res.Err)
	}
}

// warm starts instances until the pool holds n (at most PoolSize), so a
// benchmark or test does not time an instance start-up (≈ 2.5 ms).
func (p *Plugin) warm(ctx context.Context, n int) error {
	n = min(n, p.cfg.PoolSize)
	for {
		p.mu.Lock()
		if p.closed || len(p.all)+p.spawning >= n {
			p.mu.Unlock()
			return nil
		}
		p.spawning++
		p.mu.Unlock()
		if _, err := p.spawn(ctx, false); err != nil {
			return err
		}
	}
}
