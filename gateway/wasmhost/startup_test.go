package wasmhost

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStartUpCallbacksBounded: a guest that loops or traps in any start-up
// callback (_initialize, proxy_on_vm_start, proxy_on_configure) is refused
// by NewPlugin within its CallTimeout, with an error naming the callback and
// the kind, and the runtime keeps serving other plugins.
func TestStartUpCallbacksBounded(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	tests := []struct {
		guest, vmConf, conf string
		callback, kind      string
	}{
		{guest: "initloop", callback: "_initialize", kind: "timeout"},
		{guest: "inittrap", callback: "_initialize", kind: "trap"},
		{guest: "hostile", vmConf: "loop", callback: "proxy_on_vm_start", kind: "timeout"},
		{guest: "hostile", vmConf: "trap", callback: "proxy_on_vm_start", kind: "trap"},
		{guest: "hostile", conf: "loop", callback: "proxy_on_configure", kind: "timeout"},
		{guest: "hostile", conf: "trap", callback: "proxy_on_configure", kind: "trap"},
	}
	const timeout = 200 * time.Millisecond
	for _, tc := range tests {
		t.Run(tc.callback+"/"+tc.kind, func(t *testing.T) {
			mod, err := r.Compile(context.Background(), guest(t, tc.guest))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p, err := r.NewPlugin(context.Background(), mod, PluginConfig{
				Name: "startup", PoolSize: 1, CallTimeout: timeout,
				VMConfiguration: []byte(tc.vmConf), Configuration: []byte(tc.conf),
			})
			took := time.Since(start)
			if err == nil {
				p.Close()
				t.Fatal("NewPlugin accepted a guest that misbehaves at start-up")
			}
			var ge *guestError
			if !errors.As(err, &ge) || ge.Callback != tc.callback || ge.Kind != tc.kind {
				t.Fatalf("error %v: want a %s in %s", err, tc.kind, tc.callback)
			}
			if !strings.Contains(err.Error(), tc.callback) {
				t.Fatalf("error %q does not name %s", err, tc.callback)
			}
			if tc.kind == "timeout" && (took < timeout || took > 20*timeout) {
				t.Fatalf("refused after %v: want about the %v deadline", took, timeout)
			}
		})
	}
	// The runtime is not wedged: a well-behaved plugin starts and serves.
	p := newPlugin(t, r, "hostile", PluginConfig{PoolSize: 1, CallTimeout: 5 * time.Second})
	s := openStream(t, p, StreamInfo{})
	defer s.Close()
	if res := s.OnRequestHeaders(reqHeaders(":path", "/"), true); res.Action != Continue {
		t.Fatalf("healthy plugin after refused ones: %+v", res)
	}
	r.wd.mu.Lock()
	watched := len(r.wd.set)
	r.wd.mu.Unlock()
	if watched != 1 {
		t.Fatalf("watchdog watches %d instances, want 1 (refused ones must be forgotten)", watched)
	}
}

// TestTwoPluginsOfOneNameCoexist: a new version of a filter starts while
// the last known good of the same name still runs (instance names are
// unique in the runtime, not per plugin).
func TestTwoPluginsOfOneNameCoexist(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	a := newPlugin(t, r, "hostile", PluginConfig{Name: "same", PoolSize: 1})
	b := newPlugin(t, r, "noop", PluginConfig{Name: "same", PoolSize: 1})
	for _, p := range []*Plugin{a, b} {
		s := openStream(t, p, StreamInfo{})
		if res := s.OnRequestHeaders(reqHeaders(":path", "/"), true); res.Action != Continue {
			t.Fatalf("%+v", res)
		}
		s.Close()
	}
}

// TestRootCallbacksBounded: a guest looping in proxy_on_tick or in
// proxy_on_http_call_response is stopped at its CallTimeout like any call:
// the instance is discarded (a timeout is counted), and the runtime keeps
// serving.
func TestRootCallbacksBounded(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	for _, tc := range []struct{ callback, conf string }{
		{"proxy_on_tick", "loop-tick"},
		{"proxy_on_http_call_response", "loop-callout"},
	} {
		t.Run(tc.callback, func(t *testing.T) {
			p := newPlugin(t, r, "hostile", PluginConfig{Name: "root-" + tc.conf, PoolSize: 1, CallTimeout: 200 * time.Millisecond,
				Configuration: []byte(tc.conf), HTTPCaller: upstream(t)})
			eventually(t, tc.callback+" timed out", 10*time.Second, func() bool {
				st := p.Stats()
				return st.Timeouts > 0 && st.Replaced > 0
			})
		})
	}
	p := newPlugin(t, r, "hostile", PluginConfig{Name: "healthy", PoolSize: 1})
	s := openStream(t, p, StreamInfo{})
	defer s.Close()
	if res := s.OnRequestHeaders(reqHeaders(":path", "/"), true); res.Action != Continue {
		t.Fatalf("healthy plugin beside the looping ones: %+v", res)
	}
}
