package wasmhost

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// conformance starts the conformance guest with every dependency wired.
func conformance(t *testing.T, mut func(*PluginConfig)) (*Runtime, *Plugin, *logSink) {
	t.Helper()
	r := newRuntime(t, RuntimeConfig{})
	sink := &logSink{}
	cfg := PluginConfig{
		Name:            "conf",
		RootID:          "conf-root",
		VMID:            "vm-a",
		VMConfiguration: []byte("vm-a"),
		Configuration:   []byte("plugin-config"),
		Properties:      map[string][]byte{"node.id": []byte("gw-1")},
		HTTPCaller:      upstream(t),
		Logger:          slog.New(sink),
		LogLevel:        LogDebug,
		PoolSize:        2,
		PauseTimeout:    5 * time.Second,
	}
	if mut != nil {
		mut(&cfg)
	}
	return r, newPlugin(t, r, "conformance", cfg), sink
}

func TestConformanceRequestHeaders(t *testing.T) {
	_, p, sink := conformance(t, nil)
	info := StreamInfo{
		SourceAddress: "10.0.0.7:4242", DestinationAddress: "10.0.0.1:8443",
		PeerURISAN: "spiffe://mesh/ns/default/sa/web", PeerPrincipal: "CN=web", MTLS: true, TLSVersion: "TLSv1.3",
		RouteName: "r1", Properties: map[string][]byte{"custom.prop": []byte("custom")},
	}
	tests := []struct {
		name  string
		extra []string
		want  map[string]string
		gone  []string
	}{
		{"headers", []string{"x-replace", "old", "x-remove", "bye", "x-remove", "bye2"}, map[string]string{
			"x-r-pairs": "0/8/8", "x-r-size-ok": "true", "x-replace": "new", "x-r-missing": "1",
			"x-set-pairs": "ok", "x-r-resp-map-in-request": "1",
		}, []string{"x-remove"}},
		{"properties", nil, map[string]string{
			"x-r-p-source.address": "10.0.0.7:4242", "x-r-p-source.port": "4242",
			"x-r-p-destination.address":                 "10.0.0.1:8443",
			"x-r-p-connection.uri_san_peer_certificate": "spiffe://mesh/ns/default/sa/web",
			"x-r-p-connection.subject_peer_certificate": "CN=web",
			"x-r-p-plugin_name":                         "conf", "x-r-p-plugin_root_id": "conf-root", "x-r-p-plugin_vm_id": "vm-a",
			"x-r-p-node.id": "gw-1", "x-r-p-request.path": "/p?q=1", "x-r-p-request.method": "GET",
			"x-r-p-request.host": "example.test", "x-r-p-request.headers.x-test": "properties",
			"x-r-p-route_name": "r1", "x-r-p-custom.prop": "custom", "x-r-p-connection.mtls": "1:1", "x-r-p-connection.tls_version": "TLSv1.3",
			"x-r-set-prop": "0", "x-r-get-set-prop": "0:value", "x-r-p-missing": "1",
		}, nil},
		{"call-bad", nil, map[string]string{"x-r-call-bad": "2,2"}, nil},
		{"shared", nil, map[string]string{"x-r-shared": "1,0,0:one,8,0:two"}, nil},
		{"metrics", nil, map[string]string{"x-r-metrics": "0:" + "?", "x-r-time": ""}, nil},
		{"config", nil, map[string]string{
			"x-r-vm-config": "vm-a", "x-r-plugin-config": "plugin-config",
			"x-r-plugin-config-part": "13:lug", "x-r-set-config": "2",
		}, nil},
		{"effective", nil, map[string]string{"x-r-effective-bad": "2", "x-r-effective-root": "0", "x-r-root-headers": "1"}, nil},
		{"time", nil, map[string]string{"x-r-log-level": "0:1", "x-r-foreign": "1", "x-r-done": "0",
			"x-r-clear-route-cache": "0", "x-r-status": "0:0:"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := reqHeaders(append([]string{"x-test", tc.name}, tc.extra...)...)
			res := request(t, p, info, h)
			if res.Action != Continue || res.Err != nil {
				t.Fatalf("result %v err %v", res.Action, res.Err)
			}
			for k, want := range tc.want {
				got, ok := h.Get(k)
				switch {
				case k == "x-r-metrics":
					// counter value depends on earlier requests; check the rest.
					parts := strings.Split(got, ",")
					if len(parts) != 7 || !strings.HasPrefix(parts[0], "0:") || parts[1] != "0" || parts[2] != "42" ||
						parts[3] != "40" || parts[4] != "0" || parts[5] != "2" || parts[6] != "2" {
						t.Errorf("x-r-metrics = %q, want 0:N,0,42,40,0,2,2", got)
					}
				case k == "x-r-time":
					if ok {
						t.Errorf("x-r-time set in scenario %s", tc.name)
					}
				case !ok || got != want:
					t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
				}
			}
			for _, k := range tc.gone {
				if _, ok := h.Get(k); ok {
					t.Errorf("%s still present: %v", k, h.Pairs)
				}
			}
		})
	}
	t.Run("clock and logs", func(t *testing.T) {
		h := reqHeaders("x-test", "time")
		before := time.Now().UnixNano()
		request(t, p, info, h)
		v, _ := h.Get("x-r-time")
		ns, err := strconv.ParseInt(strings.TrimPrefix(v, "0:"), 10, 64)
		if err != nil || ns < before || ns > time.Now().UnixNano() {
			t.Fatalf("x-r-time = %q, want a real clock between %d and now", v, before)
		}
		if !sink.Contains("INFO vm started") || !sink.Contains("ERROR log at 5") || !sink.Contains("WARN log at 3") {
			t.Fatalf("guest logs missing: %v", sink.Lines())
		}
		if sink.Contains("log at 0") {
			t.Fatalf("trace log passed LogLevel debug: %v", sink.Lines())
		}
	})
	t.Run("guest metrics", func(t *testing.T) {
		byName := map[string]GuestMetric{}
		for _, m := range p.r.GuestMetrics() {
			byName[m.Name] = m
		}
		if byName["conf_requests"].Value < int64(len(tests)) || byName["conf_gauge"].Value != 40 ||
			byName["conf_hist"].Count == 0 || byName["conf_hist"].Sum < 7 || byName["conf_logged"].Value < int64(len(tests)) {
			t.Fatalf("guest metrics = %+v", byName)
		}
		if m := byName["conf_requests"]; m.Plugin != p.Config().Name || m.Kind != "counter" || byName["conf_hist"].Kind != "histogram" {
			t.Fatalf("conf_requests = %+v, want plugin %q, kind counter", m, p.Config().Name)
		}
		st := p.Stats()
		if st.Calls == 0 || st.Traps != 0 || st.Latency.Sum <= 0 {
			t.Fatalf("plugin stats = %+v", st)
		}
	})
}

func TestConformanceLocalReplyAndClose(t *testing.T) {
	_, p, _ := conformance(t, nil)
	res := request(t, p, StreamInfo{}, reqHeaders("x-test", "local"))
	if res.Action != Reply || res.Reply.Status != 403 || string(res.Reply.Body) != "no entry" ||
		res.Reply.Details != "denied-by-test" || res.Reply.GRPCStatus != -1 || (&Headers{Pairs: res.Reply.Headers}).Len() != 2 {
		t.Fatalf("local reply = %+v %+v", res, res.Reply)
	}
	if res := request(t, p, StreamInfo{}, reqHeaders("x-test", "close")); res.Action != Reset {
		t.Fatalf("close stream: action %v", res.Action)
	}
}

func TestConformanceHTTPCall(t *testing.T) {
	_, p, _ := conformance(t, nil)
	t.Run("continue after response", func(t *testing.T) {
		h := reqHeaders("x-test", "call")
		res := request(t, p, StreamInfo{}, h)
		if res.Action != Continue {
			t.Fatalf("action %v err %v", res.Action, res.Err)
		}
		for k, want := range map[string]string{
			"x-r-call-status": "202", "x-r-call-body": "hello GET /callee?x=1 from=guest", "x-r-call-root": "true",
		} {
			if got, _ := h.Get(k); got != want {
				t.Errorf("%s = %q, want %q (%v)", k, got, want, h.Pairs)
			}
		}
	})
	t.Run("response paused by a call, resumed by continue_stream(response)", func(t *testing.T) {
		s := openStream(t, p, StreamInfo{})
		defer s.Close()
		if res := s.OnRequestHeaders(reqHeaders("x-test", "resp-call"), true); res.Action != Continue {
			t.Fatalf("request: %v", res.Action)
		}
		rh := NewHeaders(":status", "200")
		if res := s.OnResponseHeaders(rh, true); res.Action != Continue || res.Err != nil {
			t.Fatalf("response: %v %v", res.Action, res.Err)
		}
		if v, _ := rh.Get("x-r-resp-call"); v != "202" {
			t.Fatalf("x-r-resp-call = %q (%v)", v, rh.Pairs)
		}
	})
	t.Run("local reply from response", func(t *testing.T) {
		res := request(t, p, StreamInfo{}, reqHeaders("x-test", "call-reply"))
		if res.Action != Reply || res.Reply.Status != 201 || !strings.HasPrefix(string(res.Reply.Body), "call said: hello GET") {
			t.Fatalf("result %+v", res)
		}
	})
}

func TestConformanceBodiesAndTrailers(t *testing.T) {
	_, p, _ := conformance(t, nil)
	t.Run("buffered request body with prepend, append, bad ranges", func(t *testing.T) {
		s := openStream(t, p, StreamInfo{})
		defer s.Close()
		if r := s.OnRequestHeaders(reqHeaders("x-test", "body"), false); r.Action != Continue {
			t.Fatalf("headers: %v", r.Action)
		}
		if r := s.OnRequestBody([]byte("hel"), false); r.Action != Buffer || r.Body != nil {
			t.Fatalf("chunk 1: %+v", r)
		}
		r := s.OnRequestBody([]byte("lo"), true)
		if r.Action != Continue || string(r.Body) != "[hello](5=5:hello;2,2)" {
			t.Fatalf("chunk 2: %v %q", r.Action, r.Body)
		}
		tr := NewHeaders("grpc-status", "0")
		if r := s.OnRequestTrailers(tr); r.Action != Continue {
			t.Fatalf("trailers: %v", r.Action)
		}
		if v, _ := tr.Get("x-r-trailer"); v != "seen:0:1" {
			t.Fatalf("trailer = %q", v)
		}
		rh := NewHeaders(":status", "200")
		if r := s.OnResponseHeaders(rh, false); r.Action != Continue {
			t.Fatalf("response headers: %v", r.Action)
		}
		if v, _ := rh.Get("x-r-resp"); v != "200 /p?q=1 body" {
			t.Fatalf("x-r-resp = %q", v)
		}
		if v, _ := rh.Get("x-r-resp-code"); v != "200" {
			t.Fatalf("x-r-resp-code = %q", v)
		}
		if r := s.OnResponseBody([]byte("resp"), true); string(r.Body) != "resp +tail" {
			t.Fatalf("response body %q", r.Body)
		}
		rt := NewHeaders("a", "b")
		s.OnResponseTrailers(rt)
		if v, _ := rt.Get("x-r-resp-trailer"); v != "1" {
			t.Fatalf("response trailer %q", v)
		}
	})
	t.Run("replace and local reply from body", func(t *testing.T) {
		for _, tc := range []struct{ scenario, want string }{{"body-replace", "replaced"}, {"body-local", "echo:abcdef"}} {
			s := openStream(t, p, StreamInfo{})
			s.OnRequestHeaders(reqHeaders("x-test", tc.scenario), false)
			s.OnRequestBody([]byte("abc"), false)
			r := s.OnRequestBody([]byte("def"), true)
			got := string(r.Body)
			if r.Action == Reply {
				got = string(r.Reply.Body)
			}
			if got != tc.want {
				t.Errorf("%s: got %v %q, want %q", tc.scenario, r.Action, got, tc.want)
			}
			s.Close()
		}
	})
}

func TestConformanceTicksQueuesSharedAcrossPlugins(t *testing.T) {
	r, p, _ := conformance(t, func(c *PluginConfig) { c.Configuration = []byte("tick") })
	// A second plugin of the same vm_id shares data and queues.
	p2 := newPlugin(t, r, "conformance", PluginConfig{Name: "conf2", VMID: "vm-a", VMConfiguration: []byte("vm-a"), PoolSize: 1})
	read := func(pl *Plugin, key string) string {
		h := reqHeaders("x-test", "read-shared", "x-key", key)
		request(t, pl, StreamInfo{}, h)
		v, _ := h.Get("x-r-value")
		return v
	}
	eventually(t, "root context ticks", 5*time.Second, func() bool {
		v := read(p2, "ticks")
		n, _ := strconv.Atoi(strings.TrimPrefix(v, "0:"))
		return n >= 3
	})
	h := reqHeaders("x-test", "queue", "x-item", "item-1")
	request(t, p2, StreamInfo{}, h)
	if v, _ := h.Get("x-r-queue"); v != "0,true,1,0" {
		t.Fatalf("x-r-queue = %q", v)
	}
	eventually(t, "on_queue_ready", 5*time.Second, func() bool { return read(p, "queue-last") == "0:item-1" })
	t.Run("a paused stream is resumed by a tick through set_effective_context", func(t *testing.T) {
		h := reqHeaders("x-test", "tick-wait")
		res := request(t, p, StreamInfo{}, h)
		if v, _ := h.Get("x-r-ticked"); res.Action != Continue || v != "1" {
			t.Fatalf("action %v err %v ticked %q", res.Action, res.Err, v)
		}
	})
	t.Run("other vm_id does not see the data", func(t *testing.T) {
		p3 := newPlugin(t, r, "conformance", PluginConfig{Name: "conf3", VMID: "vm-b", VMConfiguration: []byte("vm-b"), PoolSize: 1})
		if v := read(p3, "ticks"); v != "1:" {
			t.Fatalf("vm-b sees ticks: %q", v)
		}
	})
}

func TestConformancePauseTimeoutFailPolicy(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run("failOpen="+strconv.FormatBool(failOpen), func(t *testing.T) {
			_, p, _ := conformance(t, func(c *PluginConfig) { c.PauseTimeout = 50 * time.Millisecond; c.FailOpen = failOpen })
			res := request(t, p, StreamInfo{}, reqHeaders("x-test", "pause-forever"))
			if res.Err == nil || !strings.Contains(res.Err.Error(), "pause-timeout") {
				t.Fatalf("err = %v", res.Err)
			}
			if failOpen && res.Action != Continue || !failOpen && (res.Action != Reply || res.Reply.Status != 503) {
				t.Fatalf("action %v reply %+v", res.Action, res.Reply)
			}
			// The instance is healthy: the next request works.
			h := reqHeaders("x-test", "headers")
			if res := request(t, p, StreamInfo{}, h); res.Action != Continue || res.Err != nil {
				t.Fatalf("next request: %v %v", res.Action, res.Err)
			}
		})
	}
}

func TestConformanceRejectedConfiguration(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	mod, err := r.Compile(context.Background(), guest(t, "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.NewPlugin(context.Background(), mod, PluginConfig{Name: "x", Configuration: []byte("reject")})
	if err == nil || !strings.Contains(err.Error(), "rejected the plugin configuration") {
		t.Fatalf("err = %v", err)
	}
	_, err = r.NewPlugin(context.Background(), mod, PluginConfig{Name: "x", CodeSHA256: strings.Repeat("0", 64)})
	if err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("sha mismatch err = %v", err)
	}
}

// TestInstanceStartFailureFailsRequests: when a further instance cannot
// start, the stream that needed it is answered per the fail policy.
func TestInstanceStartFailureFailsRequests(t *testing.T) {
	_, p, _ := conformance(t, func(c *PluginConfig) { c.Configuration = []byte("once"); c.VMID = "vm-once" })
	first, err := p.NewStream(context.Background(), StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := p.NewStream(context.Background(), StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	res := second.OnRequestHeaders(reqHeaders(), true)
	second.Close()
	if res.Action != Reply || res.Reply.Status != 503 || res.Err == nil || !strings.Contains(res.Err.Error(), "rejected") {
		t.Fatalf("second stream: %v %+v %v", res.Action, res.Reply, res.Err)
	}
	if st := p.Stats(); st.StartFailures != 1 || st.Instances != 1 {
		t.Fatalf("stats %+v", st)
	}
	if res := first.OnRequestHeaders(reqHeaders(), true); res.Action != Continue {
		t.Fatalf("first stream: %v %v", res.Action, res.Err)
	}
}

func TestABI020MallocWasiUnstable(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "abi020", PluginConfig{HTTPCaller: upstream(t)})
	if p.mod.ABI() != ABI020 {
		t.Fatalf("abi = %s", p.mod.ABI())
	}
	seen := map[string]bool{}
	for range 3 {
		h := reqHeaders()
		s := openStream(t, p, StreamInfo{})
		res := s.OnRequestHeaders(h, true)
		rh := NewHeaders(":status", "200")
		if rres := s.OnResponseHeaders(rh, true); rres.Action != Continue {
			t.Fatalf("response: %v %v", rres.Action, rres.Err)
		}
		if v, _ := rh.Get("x-call"); v != "202" {
			t.Fatalf("response not resumed by proxy_continue_response: %v", rh.Pairs)
		}
		s.Close()
		rnd, _ := h.Get("x-random")
		call, _ := h.Get("x-call")
		if res.Action != Continue || call != "202" || !strings.HasPrefix(rnd, "0:") || rnd == "0:0000000000000000" {
			t.Fatalf("action %v err %v random %q call %q", res.Action, res.Err, rnd, call)
		}
		seen[rnd] = true
	}
	if len(seen) != 3 {
		t.Fatalf("random bytes repeat (fake randomness?): %v", seen)
	}
}

// TestHeldHeadersReleasedByBody: a guest that stops headers iteration with a
// body to come sees the body, edits the held headers, and releases both.
func TestHeldHeadersReleasedByBody(t *testing.T) {
	r, p, _ := conformance(t, nil)
	t.Run("stream", func(t *testing.T) {
		s := openStream(t, p, StreamInfo{})
		defer s.Close()
		h := reqHeaders("x-test", "hold-headers")
		res := bufferedRequest(t, s, h, "ab", "cd")
		if res.Action != Continue || string(res.Body) != "abcd" {
			t.Fatalf("chunk 2: %v %q", res.Action, res.Body)
		}
		if v, _ := h.Get("x-r-body-len"); v != "4" {
			t.Fatalf("held headers not edited: %v", h.Pairs)
		}
	})
	t.Run("chain: later plugins get the headers when they are released", func(t *testing.T) {
		hdr := newPlugin(t, r, "headers", PluginConfig{Name: "after", PoolSize: 1})
		cs, err := NewChain(p, hdr).NewStream(context.Background(), StreamInfo{})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		h := reqHeaders("x-test", "hold-headers", "x-mw-dye", "green")
		if res := cs.OnRequestHeaders(h, false); res.Action != Buffer {
			t.Fatalf("headers: %v", res.Action)
		}
		if _, ok := h.Get("x-mw-lane"); ok {
			t.Fatal("second plugin saw headers the first one holds")
		}
		if res := cs.OnRequestBody([]byte("xy"), false); res.Action != Buffer {
			t.Fatalf("chunk 1: %v", res.Action)
		}
		res := cs.OnRequestBody([]byte("z"), true)
		if res.Action != Continue || string(res.Body) != "xyz" {
			t.Fatalf("chunk 2: %v %q %v", res.Action, res.Body, res.Err)
		}
		if v, _ := h.Get("x-mw-lane"); v != "green" {
			t.Fatalf("second plugin did not get the released headers: %v", h.Pairs)
		}
		if v, _ := h.Get("x-r-body-len"); v != "3" {
			t.Fatalf("x-r-body-len = %q", v)
		}
	})
}
