package wasmhost

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSDKGuest runs a guest written with filters/proxywasm (the product's
// guest ABI package) through the real host: the two sides of the ABI agree.
func TestSDKGuest(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	sink := &logSink{}
	wasm := guestPkg(t, "sdkconf", "./testdata/guests/sdkconf")
	mod, err := r.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	if mod.ABI() != ABI021 {
		t.Fatalf("abi %s", mod.ABI())
	}
	p, err := r.NewPlugin(context.Background(), mod, PluginConfig{
		Name: "sdk", VMID: "vm-sdk", VMConfiguration: []byte("vm-sdk"), Configuration: []byte("tick"),
		HTTPCaller: upstream(t), Logger: slog.New(sink), PoolSize: 2, PauseTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	info := StreamInfo{SourceAddress: "10.1.1.1:999", PeerURISAN: "spiffe://mesh/sa/x"}
	run := func(t *testing.T, kv ...string) (*Headers, Result) {
		t.Helper()
		h := reqHeaders(kv...)
		return h, request(t, p, info, h)
	}
	tests := []struct {
		test  string
		extra []string
		key   string
		want  string
	}{
		{"headers", []string{"x-replace", "old", "x-remove", "1"}, "x-r-count", "7/7/ok"},
		{"headers", nil, "x-r-missing", "err"},
		{"props", nil, "x-r-props", "10.1.1.1:999|spiffe://mesh/sa/x|sdk|ok|v|vm-sdk|tick"},
		{"props", nil, "x-r-prop-map", "5,ok"},
		{"call", nil, "x-r-call", "202|hello GET /sdk from=sdk"},
		{"shared", nil, "x-r-shared", "ok,ok,err,ok"},
		{"queue", []string{"x-item", "q1"}, "x-r-queue", "ok,ok"},
	}
	for _, tc := range tests {
		t.Run(tc.test+"/"+tc.key, func(t *testing.T) {
			h, res := run(t, append([]string{"x-test", tc.test}, tc.extra...)...)
			if res.Action != Continue || res.Err != nil {
				t.Fatalf("%v %v", res.Action, res.Err)
			}
			if got, _ := h.Get(tc.key); got != tc.want {
				t.Fatalf("%s = %q, want %q (%v)", tc.key, got, tc.want, h.Pairs)
			}
			if tc.test == "headers" && tc.extra != nil {
				if v, _ := h.Get("x-replace"); v != "new" {
					t.Fatalf("x-replace = %q", v)
				}
				if _, ok := h.Get("x-remove"); ok {
					t.Fatal("x-remove still there")
				}
				if v, _ := h.Get("x-set"); v != "1" {
					t.Fatal("set pairs lost")
				}
			}
		})
	}
	t.Run("local reply", func(t *testing.T) {
		_, res := run(t, "x-test", "local")
		if res.Action != Reply || res.Reply.Status != 418 || string(res.Reply.Body) != "teapot" {
			t.Fatalf("%v %+v", res.Action, res.Reply)
		}
	})
	t.Run("close", func(t *testing.T) {
		if _, res := run(t, "x-test", "close"); res.Action != Reset {
			t.Fatalf("%v", res.Action)
		}
	})
	t.Run("metrics misc logs", func(t *testing.T) {
		h, _ := run(t, "x-test", "metrics")
		v, _ := h.Get("x-r-metrics")
		if parts := strings.Split(v, ","); len(parts) != 2 || parts[1] != "3" || parts[0] == "0" {
			t.Fatalf("x-r-metrics = %q", v)
		}
		h, _ = run(t, "x-test", "misc")
		v, _ = h.Get("x-r-misc")
		parts := strings.Split(v, ",")
		ns, _ := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		if len(parts) != 3 || parts[1] != "ok" || time.Since(time.Unix(0, ns)) > time.Minute {
			t.Fatalf("x-r-misc = %q", v)
		}
		if !sink.Contains("sdk warn 7") || !sink.Contains(`sdk plugin started with "tick"`) {
			t.Fatalf("logs: %v", sink.Lines())
		}
		m := map[string]GuestMetric{}
		for _, s := range r.GuestMetrics() {
			m[s.Name] = s
		}
		if m["sdk_done"].Value == 0 || m["sdk_hist"].Count == 0 || m["sdk_gauge"].Value != 3 {
			t.Fatalf("guest metrics %+v", m)
		}
	})
	t.Run("body, trailers and the response path", func(t *testing.T) {
		s := openStream(t, p, info)
		defer s.Close()
		h := reqHeaders("x-test", "body")
		res := bufferedRequest(t, s, h, "ab", "c")
		if res.Action != Continue || string(res.Body) != "<ABC>" {
			t.Fatalf("chunk 2 %v %q", res.Action, res.Body)
		}
		if v, _ := h.Get("x-r-body"); v != "3" {
			t.Fatalf("x-r-body = %q", v)
		}
		tr := NewHeaders("t", "1")
		s.OnRequestTrailers(tr)
		if v, _ := tr.Get("x-r-trailer"); v != "sdk" {
			t.Fatalf("trailer %v", tr.Pairs)
		}
		rh := NewHeaders(":status", "204")
		s.OnResponseHeaders(rh, false)
		if v, _ := rh.Get("x-r-resp"); v != "204|body" {
			t.Fatalf("x-r-resp %q", v)
		}
		if res := s.OnResponseBody([]byte("ok"), true); string(res.Body) != "ok!" {
			t.Fatalf("response body %q", res.Body)
		}
		rt := NewHeaders()
		s.OnResponseTrailers(rt)
		if v, _ := rt.Get("x-r-resp-trailer"); v != "sdk" {
			t.Fatalf("response trailer %v", rt.Pairs)
		}
	})
	t.Run("ticks and queue delivery", func(t *testing.T) {
		read := func(key string) string {
			h, _ := run(t, "x-test", "read", "x-key", key)
			v, _ := h.Get("x-r-value")
			return v
		}
		eventually(t, "sdk ticks", 5*time.Second, func() bool {
			n, _ := strconv.Atoi(strings.TrimPrefix(read("sdk-ticks"), "ok:"))
			return n >= 2
		})
		eventually(t, "queue item", 5*time.Second, func() bool { return read("sdk-queue-last") == "ok:q1" })
	})
}

// blockingCaller holds every call until release is closed or the call's
// context ends; started receives one value per call.
type blockingCaller struct {
	started chan struct{}
	release chan struct{}
}

func (c *blockingCaller) HasCluster(string) bool { return true }

func (c *blockingCaller) Call(ctx context.Context, _ string, _ HTTPCallRequest) (HTTPCallResponse, error) {
	c.started <- struct{}{}
	select {
	case <-c.release:
	case <-ctx.Done():
	}
	return HTTPCallResponse{}, errors.New("blockingCaller: released")
}

// TestTrapWakesPausedStreams: a stream paused on a callout shares its
// instance with a stream whose callback traps. The paused stream fails at
// once, per its fail policy, instead of sleeping until its callout returns
// or its PauseTimeout (a minute here) ends.
func TestTrapWakesPausedStreams(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	mod, err := r.Compile(context.Background(), guestPkg(t, "sdkconf", "./testdata/guests/sdkconf"))
	if err != nil {
		t.Fatal(err)
	}
	caller := &blockingCaller{started: make(chan struct{}, 4), release: make(chan struct{})}
	defer close(caller.release)
	p, err := r.NewPlugin(context.Background(), mod, PluginConfig{Name: "sdk-trap", HTTPCaller: caller,
		PoolSize: 1, FailOpen: true, PauseTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := openStream(t, p, StreamInfo{})
	defer a.Close()
	done := make(chan Result, 1)
	go func() { done <- a.OnRequestHeaders(reqHeaders("x-test", "call"), true) }()
	select {
	case <-caller.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the paused stream's callout never started")
	}
	b := openStream(t, p, StreamInfo{}) // a pool of one: b shares a's instance
	defer b.Close()
	if b.in != a.in {
		t.Fatal("streams of a pool of one on different instances")
	}
	if res := b.OnRequestHeaders(reqHeaders("x-test", "trap"), true); res.Err == nil {
		t.Fatalf("trapping request: %v without an error", res.Action)
	}
	select {
	case res := <-done:
		if res.Action != Continue || !errors.Is(res.Err, errDead) {
			t.Fatalf("paused stream: %v %v, want Continue (fail open) with the dead instance's error", res.Action, res.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the paused stream still sleeps after its instance died")
	}
}
