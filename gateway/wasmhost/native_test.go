package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

// nativeTestFilter is a filter linked into the test binary: its behaviour
// is chosen per request by the x-mode header.
type nativeTestFilter struct {
	proxywasm.DefaultVMContext
	vm *proxywasm.VM
}

func newNativeTestFilter(vm *proxywasm.VM) proxywasm.VMContext { return &nativeTestFilter{vm: vm} }

func (f *nativeTestFilter) NewPluginContext(uint32) proxywasm.PluginContext {
	return &nativeTestPlugin{vm: f.vm}
}

type nativeTestPlugin struct {
	proxywasm.DefaultPluginContext
	vm       *proxywasm.VM
	cfg      string
	requests proxywasm.MetricCounter
	ticks    int
}

func (p *nativeTestPlugin) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	b, _ := p.vm.GetPluginConfiguration()
	p.cfg = string(b)
	if p.cfg == "refuse" {
		p.vm.LogCritical("native test: refusing to start (configuration \"refuse\")")
		return proxywasm.OnPluginStartStatusFailed
	}
	if p.cfg == "panic-start" {
		panic("native test: panic in OnPluginStart")
	}
	p.requests = p.vm.DefineCounterMetric("native_test_requests_total")
	if p.cfg == "tick" || p.cfg == "panic-tick" {
		_ = p.vm.SetTickPeriodMilliSeconds(1)
	}
	return proxywasm.OnPluginStartStatusOK
}

func (p *nativeTestPlugin) OnTick() {
	if p.cfg == "panic-tick" {
		panic("native test: panic in OnTick")
	}
	p.ticks++
	_ = p.vm.SetSharedData("native-test-ticks", []byte(strings.Repeat("t", min(p.ticks, 3))), 0)
}

func (p *nativeTestPlugin) NewHttpContext(uint32) proxywasm.HttpContext {
	return &nativeTestStream{p: p, vm: p.vm}
}

type nativeTestStream struct {
	proxywasm.DefaultHttpContext
	p  *nativeTestPlugin
	vm *proxywasm.VM
}

// IgnoresResponseBody: with configuration "ignore-bodies" the stream says
// it ignores the response body, and panics saying so with "panic-ignore".
func (s *nativeTestStream) IgnoresResponseBody() bool {
	if s.p.cfg == "panic-ignore" {
		panic("native test: panic in IgnoresResponseBody")
	}
	return s.p.cfg == "ignore-bodies"
}

func (s *nativeTestStream) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	s.p.requests.Increment(1)
	mode, _ := s.vm.GetHttpRequestHeader("x-mode")
	switch mode {
	case "panic":
		panic("native test: panic in a request")
	case "reply":
		_ = s.vm.SendHttpResponse(418, [][2]string{{"x-reply", "native"}}, []byte("short and stout"), -1)
		return proxywasm.ActionPause
	case "sleep":
		time.Sleep(300 * time.Millisecond)
	case "headers10k":
		for i := range 10_000 {
			if err := s.vm.AddHttpRequestHeader("x-many", "v"); err != nil {
				_ = s.vm.ReplaceHttpRequestHeader("x-stopped-at", string(rune('0'+i%10)))
				break
			}
		}
	case "callout-panic":
		_, _ = s.vm.DispatchHttpCall("upstream", [][2]string{{":method", "GET"}, {":path", "/call"}, {":authority", "up"}}, nil, nil, 5000,
			func(int, int, int) { panic("native test: panic in a callout callback") })
		return proxywasm.ActionPause
	case "callout":
		_, err := s.vm.DispatchHttpCall("upstream", [][2]string{{":method", "GET"}, {":path", "/call"}, {":authority", "up"}}, nil, nil, 5000,
			func(n, size, _ int) {
				body, _ := s.vm.GetHttpCallResponseBody(0, size)
				st := ""
				if hs, err := s.vm.GetHttpCallResponseHeaders(); err == nil {
					for _, h := range hs {
						if h[0] == ":status" {
							st = h[1]
						}
					}
				}
				_ = s.vm.ReplaceHttpRequestHeader("x-callout", st+" "+string(body))
				_ = s.vm.ResumeHttpRequest()
			})
		if err != nil {
			_ = s.vm.ReplaceHttpRequestHeader("x-callout-error", err.Error())
			return proxywasm.ActionContinue
		}
		return proxywasm.ActionPause
	}
	peer, _ := s.vm.GetPropertyString([]string{"connection", "uri_san_peer_certificate"})
	plugin, _ := s.vm.GetPropertyString([]string{"plugin_name"})
	_ = s.vm.ReplaceHttpRequestHeader("x-peer", peer)
	_ = s.vm.ReplaceHttpRequestHeader("x-plugin", plugin)
	_ = s.vm.ReplaceHttpRequestHeader("x-config", s.p.cfg)
	_ = s.vm.RemoveHttpRequestHeader("x-remove")
	return proxywasm.ActionContinue
}

func (s *nativeTestStream) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	st, _ := s.vm.GetHttpResponseHeader(":status")
	_ = s.vm.AddHttpResponseHeader("x-seen-status", st)
	return proxywasm.ActionContinue
}

// nativeModuleBytes stand for the official build of the test filter: only
// their sha256 matters.
var nativeModuleBytes = []byte("\x00asm native test filter")

func nativeRuntime(tb testing.TB) (*Runtime, *Module) {
	tb.Helper()
	sum := sha256.Sum256(nativeModuleBytes)
	r := newRuntime(tb, RuntimeConfig{Native: []NativeFilter{{Name: "native-test", SHA256: hex.EncodeToString(sum[:]), New: newNativeTestFilter}}})
	mod, err := r.Compile(context.Background(), nativeModuleBytes)
	if err != nil {
		tb.Fatal(err)
	}
	if mod.Runtime() != RuntimeNative || mod.NativeName() != "native-test" {
		tb.Fatalf("module runtime %q (%q), want native", mod.Runtime(), mod.NativeName())
	}
	return r, mod
}

func TestNativeFilterSemantics(t *testing.T) {
	r, mod := nativeRuntime(t)
	sink := &logSink{}
	p := startPlugin(t, r, mod, PluginConfig{
		Name: "native", Configuration: []byte("cfg-1"), HTTPCaller: upstream(t), Logger: slog.New(sink),
		MaxHeaders: 64, PoolSize: 2, CallTimeout: 100 * time.Millisecond,
	})

	t.Run("header edits and properties", func(t *testing.T) {
		h := reqHeaders("x-remove", "1")
		res := request(t, p, StreamInfo{PeerURISAN: "spiffe://test/sa/a"}, h)
		if res.Action != Continue || res.Err != nil {
			t.Fatalf("result %v %v", res.Action, res.Err)
		}
		for k, want := range map[string]string{"x-peer": "spiffe://test/sa/a", "x-plugin": "native", "x-config": "cfg-1"} {
			if v, _ := h.Get(k); v != want {
				t.Errorf("%s = %q, want %q", k, v, want)
			}
		}
		if _, ok := h.Get("x-remove"); ok {
			t.Error("x-remove was not removed")
		}
	})
	t.Run("response headers", func(t *testing.T) {
		s := openStream(t, p, StreamInfo{})
		defer s.Close()
		s.OnRequestHeaders(reqHeaders(), true)
		rh := NewHeaders(":status", "204")
		if res := s.OnResponseHeaders(rh, true); res.Action != Continue {
			t.Fatalf("response: %v %v", res.Action, res.Err)
		}
		if v, _ := rh.Get("x-seen-status"); v != "204" {
			t.Errorf("x-seen-status = %q", v)
		}
	})
	t.Run("local reply", func(t *testing.T) {
		res := request(t, p, StreamInfo{}, reqHeaders("x-mode", "reply"))
		if res.Action != Reply || res.Reply.Status != 418 || string(res.Reply.Body) != "short and stout" {
			t.Fatalf("result %v %+v", res.Action, res.Reply)
		}
	})
	t.Run("limit", func(t *testing.T) {
		res := request(t, p, StreamInfo{}, reqHeaders("x-mode", "headers10k"))
		wantGuestReply(t, res, 503, "limit")
	})
	t.Run("callout", func(t *testing.T) {
		h := reqHeaders("x-mode", "callout")
		res := request(t, p, StreamInfo{}, h)
		if res.Action != Continue || res.Err != nil {
			t.Fatalf("result %v %v", res.Action, res.Err)
		}
		if v, _ := h.Get("x-callout"); !strings.HasPrefix(v, "202 hello GET /call") {
			t.Errorf("x-callout = %q", v)
		}
	})
	t.Run("panic is a trap under the fail policy", func(t *testing.T) {
		before := p.Stats()
		res := request(t, p, StreamInfo{}, reqHeaders("x-mode", "panic"))
		wantGuestReply(t, res, 503, "trap")
		if !strings.Contains(res.Err.Error(), "panic in a request") {
			t.Fatalf("panic: %v", res.Err)
		}
		if after := p.Stats(); after.Traps != before.Traps+1 || after.Replaced != before.Replaced+1 {
			t.Errorf("traps %d→%d replaced %d→%d", before.Traps, after.Traps, before.Replaced, after.Replaced)
		}
		if res := request(t, p, StreamInfo{}, reqHeaders()); res.Action != Continue {
			t.Errorf("the next request: %v %v", res.Action, res.Err)
		}
	})
	t.Run("panic in a callout callback", func(t *testing.T) {
		res := request(t, p, StreamInfo{}, reqHeaders("x-mode", "callout-panic"))
		wantGuestReply(t, res, 503, "trap")
		if res := request(t, p, StreamInfo{}, reqHeaders()); res.Action != Continue {
			t.Errorf("the next request: %v %v", res.Action, res.Err)
		}
	})
	t.Run("deadline checked on return", func(t *testing.T) {
		res := request(t, p, StreamInfo{}, reqHeaders("x-mode", "sleep"))
		var ge *guestError
		if res.Action != Reply || !errors.As(res.Err, &ge) || ge.Kind != "timeout" {
			t.Fatalf("overrun: %v %v", res.Action, res.Err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		var found bool
		for _, m := range r.GuestMetrics() {
			if m.Name == "native_test_requests_total" && m.Value >= 5 {
				found = true
			}
		}
		if !found {
			t.Errorf("counter native_test_requests_total not recorded: %+v", r.GuestMetrics())
		}
	})
}

func TestNativeFilterStartAndTicks(t *testing.T) {
	r, mod := nativeRuntime(t)
	for _, cfg := range []string{"refuse", "panic-start"} {
		_, err := r.NewPlugin(context.Background(), mod, PluginConfig{Name: cfg, Configuration: []byte(cfg)})
		if err == nil || !strings.Contains(err.Error(), "proxy_on_configure") {
			t.Errorf("%s: NewPlugin error %v, want a refusal in proxy_on_configure", cfg, err)
		}
	}
	// A long CallTimeout makes the background loop's idle period long
	// (CallTimeout/4 = 5 s): ticks must still come at their own 1 ms period,
	// from the first one on (the instance sets it while booting).
	startPlugin(t, r, mod, PluginConfig{Name: "tick", Configuration: []byte("tick"), VMID: "native-ticks", CallTimeout: 20 * time.Second})
	eventually(t, "three ticks to write shared data", 2*time.Second, func() bool {
		v, _, ok := r.shared.get("native-ticks", "native-test-ticks")
		return ok && string(v) == "ttt"
	})
}

// TestNativePanicInTick: a native filter panicking in OnTick is a trap: the
// instance is discarded (no more ticks from it) and the plugin keeps
// serving requests on a fresh one.
func TestNativePanicInTick(t *testing.T) {
	r, mod := nativeRuntime(t)
	p := startPlugin(t, r, mod, PluginConfig{Name: "panic-tick", Configuration: []byte("panic-tick"), PoolSize: 1})
	eventually(t, "the tick's panic to discard the instance", 5*time.Second, func() bool {
		st := p.Stats()
		return st.Traps >= 1 && st.Replaced >= 1
	})
	if res := request(t, p, StreamInfo{}, reqHeaders()); res.Action != Continue {
		t.Errorf("a request after the panic: %v %v", res.Action, res.Err)
	}
}

// TestNativeInstancesConcurrent runs many streams at once through a native
// plugin's pool: every instance has its own VM (run with -race).
func TestNativeInstancesConcurrent(t *testing.T) {
	r, mod := nativeRuntime(t)
	p := startPlugin(t, r, mod, PluginConfig{Name: "conc", Configuration: []byte("c"), PoolSize: 4})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				peer := "spiffe://test/" + string(rune('a'+g)) + "/" + string(rune('a'+i%26))
				h := reqHeaders()
				if res := request(t, p, StreamInfo{PeerURISAN: peer}, h); res.Action != Continue {
					t.Errorf("result %v %v", res.Action, res.Err)
					return
				}
				if v, _ := h.Get("x-peer"); v != peer {
					t.Errorf("x-peer = %q, want %q", v, peer)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := p.Stats().Instances; n < 1 || n > 4 {
		t.Errorf("instances %d, want 1..4", n)
	}
}

func TestNativeFilterConfigErrors(t *testing.T) {
	for _, nf := range []NativeFilter{
		{Name: "x", SHA256: "abc", New: newNativeTestFilter},
		{Name: "", SHA256: strings.Repeat("0", 64), New: newNativeTestFilter},
		{Name: "x", SHA256: strings.Repeat("0", 64)},
	} {
		if _, err := NewRuntime(context.Background(), RuntimeConfig{Native: []NativeFilter{nf}}); err == nil ||
			!strings.Contains(err.Error(), "native filter") {
			t.Errorf("%+v: error %v", nf, err)
		}
	}
}

// TestNativeIgnoresResponseBody: a chain ignores the response body only
// when every stream's native context says so (a panic saying it counts as
// no); a wasm stream never does.
func TestNativeIgnoresResponseBody(t *testing.T) {
	r, mod := nativeRuntime(t)
	plugin := func(cfg string) *Plugin {
		return startPlugin(t, r, mod, PluginConfig{Name: "native-" + cfg, Configuration: []byte(cfg), PoolSize: 1})
	}
	ignoring, other, panicking := plugin("ignore-bodies"), plugin("cfg-1"), plugin("panic-ignore")
	wasm := newPlugin(t, r, "hostile", PluginConfig{PoolSize: 1})
	for _, tc := range []struct {
		name    string
		plugins []*Plugin
		want    bool
	}{
		{"native, says so", []*Plugin{ignoring}, true},
		{"two native, both say so", []*Plugin{ignoring, ignoring}, true},
		{"native, does not say so", []*Plugin{ignoring, other}, false},
		{"native, panics saying so", []*Plugin{panicking, ignoring}, false},
		{"wasm", []*Plugin{ignoring, wasm}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := NewChain(tc.plugins...).NewStream(context.Background(), StreamInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			if res := cs.OnRequestHeaders(reqHeaders(), true); res.Action != Continue || res.Err != nil {
				t.Fatalf("request headers: %v %v", res.Action, res.Err)
			}
			if got := cs.IgnoresResponseBody(); got != tc.want {
				t.Fatalf("IgnoresResponseBody = %v, want %v", got, tc.want)
			}
		})
	}
}
