package proxywasm_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// hooks is a filter whose behaviour each test supplies; nil hooks continue.
type hooks struct {
	vmStart     func(vm *proxywasm.VM, size int) bool
	pluginStart func(vm *proxywasm.VM, size int) bool
	pluginDone  func(vm *proxywasm.VM) bool
	tick        func(vm *proxywasm.VM)
	queueReady  func(vm *proxywasm.VM, id uint32)
	reqHeaders  func(vm *proxywasm.VM, id uint32, n int, eos bool) proxywasm.Action
	reqBody     func(vm *proxywasm.VM, id uint32, n int, eos bool) proxywasm.Action
	reqTrailers func(vm *proxywasm.VM, id uint32, n int) proxywasm.Action
	respHeaders func(vm *proxywasm.VM, id uint32, n int, eos bool) proxywasm.Action
	respBody    func(vm *proxywasm.VM, id uint32, n int, eos bool) proxywasm.Action
	respTrailer func(vm *proxywasm.VM, id uint32, n int) proxywasm.Action
	streamDone  func(vm *proxywasm.VM, id uint32)
}

type hookVM struct {
	h  *hooks
	vm *proxywasm.VM
}

func (v hookVM) OnVMStart(size int) proxywasm.OnVMStartStatus {
	if v.h.vmStart != nil {
		return proxywasm.OnVMStartStatus(v.h.vmStart(v.vm, size))
	}
	return proxywasm.OnVMStartStatusOK
}

func (v hookVM) NewPluginContext(uint32) proxywasm.PluginContext {
	return &hookPlugin{h: v.h, vm: v.vm}
}

type hookPlugin struct {
	proxywasm.DefaultPluginContext
	h  *hooks
	vm *proxywasm.VM
}

func (p *hookPlugin) OnPluginStart(size int) proxywasm.OnPluginStartStatus {
	if p.h.pluginStart != nil {
		return proxywasm.OnPluginStartStatus(p.h.pluginStart(p.vm, size))
	}
	return proxywasm.OnPluginStartStatusOK
}

func (p *hookPlugin) OnPluginDone() bool {
	if p.h.pluginDone != nil {
		return p.h.pluginDone(p.vm)
	}
	return true
}

func (p *hookPlugin) OnTick() {
	if p.h.tick != nil {
		p.h.tick(p.vm)
	}
}

func (p *hookPlugin) OnQueueReady(id uint32) {
	if p.h.queueReady != nil {
		p.h.queueReady(p.vm, id)
	}
}

func (p *hookPlugin) NewHttpContext(id uint32) proxywasm.HttpContext {
	return &hookStream{h: p.h, vm: p.vm, id: id}
}

type hookStream struct {
	proxywasm.DefaultHttpContext
	h  *hooks
	vm *proxywasm.VM
	id uint32
}

// fire runs a stream hook, or continues where the test set none.
func (s *hookStream) fire(f func(*proxywasm.VM, uint32, int, bool) proxywasm.Action, n int, eos bool) proxywasm.Action {
	if f == nil {
		return proxywasm.ActionContinue
	}
	return f(s.vm, s.id, n, eos)
}

// trailers adapts a trailers hook, which has no end-of-stream flag, to fire.
func trailers(f func(*proxywasm.VM, uint32, int) proxywasm.Action) func(*proxywasm.VM, uint32, int, bool) proxywasm.Action {
	if f == nil {
		return nil
	}
	return func(vm *proxywasm.VM, id uint32, n int, _ bool) proxywasm.Action { return f(vm, id, n) }
}

func (s *hookStream) OnHttpRequestHeaders(n int, eos bool) proxywasm.Action {
	return s.fire(s.h.reqHeaders, n, eos)
}

func (s *hookStream) OnHttpRequestBody(n int, eos bool) proxywasm.Action {
	return s.fire(s.h.reqBody, n, eos)
}

func (s *hookStream) OnHttpRequestTrailers(n int) proxywasm.Action {
	return s.fire(trailers(s.h.reqTrailers), n, true)
}

func (s *hookStream) OnHttpResponseHeaders(n int, eos bool) proxywasm.Action {
	return s.fire(s.h.respHeaders, n, eos)
}

func (s *hookStream) OnHttpResponseBody(n int, eos bool) proxywasm.Action {
	return s.fire(s.h.respBody, n, eos)
}

func (s *hookStream) OnHttpResponseTrailers(n int) proxywasm.Action {
	return s.fire(trailers(s.h.respTrailer), n, true)
}

func (s *hookStream) OnHttpStreamDone() {
	if s.h.streamDone != nil {
		s.h.streamDone(s.vm, s.id)
	}
}

// hookFactory returns the constructor of h's VM context.
func hookFactory(h *hooks) func(*proxywasm.VM) proxywasm.VMContext {
	return func(vm *proxywasm.VM) proxywasm.VMContext { return hookVM{h: h, vm: vm} }
}

// start returns a started emulator running h.
func start(t *testing.T, h *hooks, opt *proxytest.EmulatorOption) *proxytest.HostEmulator {
	t.Helper()
	if opt == nil {
		opt = proxytest.NewEmulatorOption()
	}
	host, reset := proxytest.NewHostEmulator(opt.WithVMContext(hookFactory(h)))
	t.Cleanup(reset)
	if host.StartVM() != types.OnVMStartStatusOK {
		t.Fatal("StartVM failed")
	}
	if host.StartPlugin() != types.OnPluginStartStatusOK {
		t.Fatal("StartPlugin failed")
	}
	return host
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var baseRequest = [][2]string{{":method", "GET"}, {":path", "/a"}, {":authority", "svc"}, {"X-Dup", "1"}, {"x-dup", "2"}}

func TestLifecycleAndConfiguration(t *testing.T) {
	var gotVM, gotPlugin string
	var done bool
	h := &hooks{
		vmStart: func(vm *proxywasm.VM, size int) bool {
			b, err := vm.GetVMConfiguration()
			gotVM = string(b)
			return err == nil && len(b) == size
		},
		pluginStart: func(vm *proxywasm.VM, size int) bool {
			b, err := vm.GetPluginConfiguration()
			gotPlugin = string(b)
			return err == nil && len(b) == size
		},
		pluginDone: func(vm *proxywasm.VM) bool { return done },
	}
	host := start(t, h, proxytest.NewEmulatorOption().
		WithVMConfiguration([]byte("vm")).WithPluginConfiguration([]byte(`{"x":1}`)))
	vm := host.VM()
	if gotVM != "vm" || gotPlugin != `{"x":1}` {
		t.Errorf("configurations = %q, %q", gotVM, gotPlugin)
	}
	if host.FinishVM() {
		t.Error("FinishVM = true although OnPluginDone returned false")
	}
	must(t, vm.PluginDone())
	if !host.IsPluginDone() {
		t.Error("PluginDone did not reach the host")
	}
	done = true
	if !host.FinishVM() {
		t.Error("FinishVM = false although OnPluginDone returned true")
	}
}

func TestPluginStartFailure(t *testing.T) {
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(hookFactory(&hooks{pluginStart: func(*proxywasm.VM, int) bool { return false }})))
	defer reset()
	if host.StartVM() != types.OnVMStartStatusOK {
		t.Fatal("StartVM failed")
	}
	if host.StartPlugin() != types.OnPluginStartStatusFailed {
		t.Error("StartPlugin succeeded; want the filter's failure")
	}
}

func TestRequestHeaders(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, vm *proxywasm.VM)
		want [][2]string
	}{
		{"untouched (names lower-cased by the host)", func(*testing.T, *proxywasm.VM) {}, [][2]string{
			{":method", "GET"}, {":path", "/a"}, {":authority", "svc"}, {"x-dup", "1"}, {"x-dup", "2"},
		}},
		{"add keeps existing values", func(t *testing.T, vm *proxywasm.VM) { must(t, vm.AddHttpRequestHeader("X-Dup", "3")) }, [][2]string{
			{":method", "GET"}, {":path", "/a"}, {":authority", "svc"}, {"x-dup", "1"}, {"x-dup", "2"}, {"x-dup", "3"},
		}},
		{"replace collapses duplicates", func(t *testing.T, vm *proxywasm.VM) { must(t, vm.ReplaceHttpRequestHeader("x-dup", "9")) }, [][2]string{
			{":method", "GET"}, {":path", "/a"}, {":authority", "svc"}, {"x-dup", "9"},
		}},
		{"replace adds when absent", func(t *testing.T, vm *proxywasm.VM) { must(t, vm.ReplaceHttpRequestHeader("x-new", "v")) }, [][2]string{
			{":method", "GET"}, {":path", "/a"}, {":authority", "svc"}, {"x-dup", "1"}, {"x-dup", "2"}, {"x-new", "v"},
		}},
		{"remove drops every value", func(t *testing.T, vm *proxywasm.VM) { must(t, vm.RemoveHttpRequestHeader("X-DUP")) }, [][2]string{
			{":method", "GET"}, {":path", "/a"}, {":authority", "svc"},
		}},
		{"set pairs replaces the map", func(t *testing.T, vm *proxywasm.VM) {
			must(t, vm.ReplaceHttpRequestHeaders([][2]string{{":path", "/b"}, {"k", ""}}))
		}, [][2]string{{":path", "/b"}, {"k", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotN int
			var gotPairs [][2]string
			host := start(t, &hooks{reqHeaders: func(vm *proxywasm.VM, _ uint32, n int, _ bool) proxywasm.Action {
				gotN = n
				var err error
				gotPairs, err = vm.GetHttpRequestHeaders()
				must(t, err)
				tt.edit(t, vm)
				return proxywasm.ActionContinue
			}}, nil)
			id := host.InitializeHttpContext()
			if a := host.CallOnRequestHeaders(id, baseRequest, false); a != types.ActionContinue {
				t.Fatalf("action = %v", a)
			}
			if gotN != len(baseRequest) || len(gotPairs) != len(baseRequest) {
				t.Errorf("numHeaders %d, pairs %d; want %d", gotN, len(gotPairs), len(baseRequest))
			}
			if got := host.GetCurrentRequestHeaders(id); !slices.Equal(got, tt.want) {
				t.Errorf("headers = %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestGetHeaderValue(t *testing.T) {
	type result struct {
		v   string
		err error
	}
	var path, dup, missing result
	host := start(t, &hooks{reqHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
		path.v, path.err = vm.GetHttpRequestHeader(":PATH")
		dup.v, dup.err = vm.GetHttpRequestHeader("x-dup")
		missing.v, missing.err = vm.GetHttpRequestHeader("x-missing")
		return proxywasm.ActionContinue
	}}, nil)
	host.CallOnRequestHeaders(host.InitializeHttpContext(), baseRequest, true)
	if path.v != "/a" || path.err != nil {
		t.Errorf(":path = %q, %v", path.v, path.err)
	}
	if dup.v != "1" || dup.err != nil {
		t.Errorf("x-dup = %q, %v; want the first value", dup.v, dup.err)
	}
	if !errors.Is(missing.err, proxywasm.ErrNotFound) || !errors.Is(missing.err, types.ErrorStatusNotFound) {
		t.Errorf("missing header error = %v, want ErrNotFound", missing.err)
	}
}

func TestResponseHeadersAndTrailers(t *testing.T) {
	var reqTrailer string
	host := start(t, &hooks{
		reqTrailers: func(vm *proxywasm.VM, _ uint32, _ int) proxywasm.Action {
			reqTrailer, _ = vm.GetHttpRequestTrailer("grpc-x")
			must(t, vm.AddHttpRequestTrailer("x-req-trailer", "1"))
			return proxywasm.ActionContinue
		},
		respHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
			must(t, vm.ReplaceHttpResponseHeader("x-served-by", "mw"))
			must(t, vm.RemoveHttpResponseHeader("server"))
			must(t, vm.AddHttpResponseHeader("x-a", "1"))
			return proxywasm.ActionContinue
		},
		respTrailer: func(vm *proxywasm.VM, _ uint32, _ int) proxywasm.Action {
			tr, err := vm.GetHttpResponseTrailers()
			must(t, err)
			must(t, vm.ReplaceHttpResponseTrailers(append(tr, [2]string{"x-count", "1"})))
			must(t, vm.ReplaceHttpResponseTrailer("grpc-status", "0"))
			must(t, vm.RemoveHttpResponseTrailer("x-drop"))
			return proxywasm.ActionContinue
		},
	}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, baseRequest, false)
	host.CallOnRequestTrailers(id, [][2]string{{"grpc-x", "y"}})
	host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"server", "up"}}, false)
	host.CallOnResponseTrailers(id, [][2]string{{"grpc-status", "2"}, {"x-drop", "1"}})
	if reqTrailer != "y" {
		t.Errorf("request trailer = %q", reqTrailer)
	}
	if got, want := host.GetCurrentRequestTrailers(id), [][2]string{{"grpc-x", "y"}, {"x-req-trailer", "1"}}; !slices.Equal(got, want) {
		t.Errorf("request trailers = %q, want %q", got, want)
	}
	if got, want := host.GetCurrentResponseHeaders(id), [][2]string{{":status", "200"}, {"x-served-by", "mw"}, {"x-a", "1"}}; !slices.Equal(got, want) {
		t.Errorf("response headers = %q, want %q", got, want)
	}
	if got, want := host.GetCurrentResponseTrailers(id), [][2]string{{"grpc-status", "0"}, {"x-count", "1"}}; !slices.Equal(got, want) {
		t.Errorf("response trailers = %q, want %q", got, want)
	}
}

func TestBodies(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		edit   func(t *testing.T, vm *proxywasm.VM, body []byte)
		want   string
	}{
		{"replace after buffering", []string{"ab", "cd", "ef"}, func(t *testing.T, vm *proxywasm.VM, b []byte) {
			must(t, vm.ReplaceHttpRequestBody([]byte(strings.ToUpper(string(b)))))
		}, "ABCDEF"},
		{"append and prepend", []string{"mid"}, func(t *testing.T, vm *proxywasm.VM, _ []byte) {
			must(t, vm.AppendHttpRequestBody([]byte(">")))
			must(t, vm.PrependHttpRequestBody([]byte("<")))
		}, "<mid>"},
		{"untouched", []string{"x", "y"}, func(*testing.T, *proxywasm.VM, []byte) {}, "xy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sizes []int
			host := start(t, &hooks{reqBody: func(vm *proxywasm.VM, _ uint32, n int, eos bool) proxywasm.Action {
				sizes = append(sizes, n)
				if !eos {
					return proxywasm.ActionPause
				}
				b, err := vm.GetHttpRequestBody(0, n)
				must(t, err)
				part, err := vm.GetHttpRequestBody(1, 1)
				must(t, err)
				if len(b) > 1 && part[0] != b[1] {
					t.Errorf("GetHttpRequestBody(1, 1) = %q, want %q", part, b[1:2])
				}
				tt.edit(t, vm, b)
				return proxywasm.ActionContinue
			}}, nil)
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, baseRequest, false)
			total := 0
			for i, c := range tt.chunks {
				total += len(c)
				eos := i == len(tt.chunks)-1
				a := host.CallOnRequestBody(id, []byte(c), eos)
				if want := map[bool]types.Action{false: types.ActionPause, true: types.ActionContinue}[eos]; a != want {
					t.Fatalf("chunk %d: action %v, want %v", i, a, want)
				}
				if sizes[i] != total {
					t.Errorf("chunk %d: bodySize %d, want the buffered %d", i, sizes[i], total)
				}
			}
			if got := string(host.GetCurrentRequestBody(id)); got != tt.want {
				t.Errorf("body = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestResponseBody(t *testing.T) {
	host := start(t, &hooks{respBody: func(vm *proxywasm.VM, _ uint32, n int, eos bool) proxywasm.Action {
		b, err := vm.GetHttpResponseBody(0, n)
		must(t, err)
		must(t, vm.ReplaceHttpResponseBody(append([]byte("["), b...)))
		must(t, vm.AppendHttpResponseBody([]byte("]")))
		must(t, vm.PrependHttpResponseBody([]byte("!")))
		return proxywasm.ActionContinue
	}}, nil)
	id := host.InitializeHttpContext()
	host.CallOnResponseBody(id, []byte("body"), true)
	if got := string(host.GetCurrentResponseBody(id)); got != "![body]" {
		t.Errorf("response body = %q", got)
	}
}

func TestSendHttpResponse(t *testing.T) {
	host := start(t, &hooks{reqHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
		must(t, vm.SendHttpResponse(429, [][2]string{{"Retry-After", "1"}}, []byte("slow down"), -1))
		return proxywasm.ActionPause
	}}, nil)
	id := host.InitializeHttpContext()
	if a := host.CallOnRequestHeaders(id, baseRequest, true); a != types.ActionPause {
		t.Errorf("action %v", a)
	}
	r := host.GetSentLocalResponse(id)
	if r == nil || r.StatusCode != 429 || string(r.Data) != "slow down" || r.GRPCStatus != -1 ||
		!slices.Equal(r.Headers, [][2]string{{"retry-after", "1"}}) {
		t.Fatalf("local response = %+v", r)
	}
	other := host.InitializeHttpContext()
	host.CallOnResponseHeaders(other, nil, true)
	if host.GetSentLocalResponse(other) != nil {
		t.Error("a local response leaked into another stream")
	}
}

func TestSendHttpResponseBadStatus(t *testing.T) {
	var err error
	host := start(t, &hooks{reqHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
		err = vm.SendHttpResponse(99, nil, nil, -1)
		return proxywasm.ActionContinue
	}}, nil)
	host.CallOnRequestHeaders(host.InitializeHttpContext(), baseRequest, true)
	if !errors.Is(err, proxywasm.ErrBadArgument) {
		t.Errorf("status 99: err = %v, want ErrBadArgument", err)
	}
}

func TestDispatchHttpCall(t *testing.T) {
	var gotBody, gotStatus string
	var calls int
	h := &hooks{reqHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
		_, err := vm.DispatchHttpCall("authz", [][2]string{
			{":method", "POST"}, {":path", "/check"}, {":authority", "authz"},
		}, []byte("req"), [][2]string{{"t", "1"}}, 250, func(numHeaders, bodySize, numTrailers int) {
			calls++
			b, err := vm.GetHttpCallResponseBody(0, bodySize)
			must(t, err)
			gotBody = string(b)
			hs, err := vm.GetHttpCallResponseHeaders()
			must(t, err)
			if len(hs) != numHeaders {
				t.Errorf("numHeaders %d, pairs %d", numHeaders, len(hs))
			}
			tr, err := vm.GetHttpCallResponseTrailers()
			must(t, err)
			if len(tr) != numTrailers {
				t.Errorf("numTrailers %d, pairs %d", numTrailers, len(tr))
			}
			gotStatus = hs[0][1]
			// The dispatching stream is effective again: edit it and resume.
			must(t, vm.AddHttpRequestHeader("x-authz", gotStatus))
			must(t, vm.ResumeHttpRequest())
		})
		must(t, err)
		return proxywasm.ActionPause
	}}
	host := start(t, h, nil)
	id := host.InitializeHttpContext()
	if a := host.CallOnRequestHeaders(id, baseRequest, true); a != types.ActionPause {
		t.Fatalf("action %v, want pause", a)
	}
	co := host.GetCalloutAttributesFromContext(id)
	if len(co) != 1 || co[0].Upstream != "authz" || string(co[0].Body) != "req" || co[0].TimeoutMillis != 250 ||
		!slices.Equal(co[0].Trailers, [][2]string{{"t", "1"}}) {
		t.Fatalf("callouts = %+v", co)
	}
	host.CallOnHttpCallResponse(co[0].CalloutID, [][2]string{{":status", "200"}}, nil, []byte("allow"))
	if calls != 1 || gotBody != "allow" || gotStatus != "200" {
		t.Errorf("callback: calls %d body %q status %q", calls, gotBody, gotStatus)
	}
	if req, _ := host.GetResumeCount(id); req != 1 || host.GetCurrentHttpStreamAction(id) != types.ActionContinue {
		t.Errorf("request resumed %d times, action %v", req, host.GetCurrentHttpStreamAction(id))
	}
	if v := host.GetCurrentRequestHeaders(id); !slices.Contains(v, [2]string{"x-authz", "200"}) {
		t.Errorf("the callback's header edit did not reach the dispatching stream: %q", v)
	}
	if len(host.GetCallouts()) != 0 {
		t.Error("an answered callout is still pending")
	}

	// A stream that ends before the response: its callback must not run.
	id2 := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id2, baseRequest, true)
	token := host.GetCalloutAttributesFromContext(id2)[0].CalloutID
	host.CompleteHttpContext(id2)
	host.CallOnHttpCallResponse(token, [][2]string{{":status", "200"}}, nil, nil)
	if calls != 1 {
		t.Errorf("the callback ran for a deleted stream (calls %d)", calls)
	}
}

func TestDispatchHttpCallBadArgument(t *testing.T) {
	var err error
	host := start(t, &hooks{reqHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
		_, err = vm.DispatchHttpCall("c", [][2]string{{":method", "GET"}}, nil, nil, 10, func(int, int, int) {})
		return proxywasm.ActionContinue
	}}, nil)
	vm := host.VM()
	host.CallOnRequestHeaders(host.InitializeHttpContext(), baseRequest, true)
	if !errors.Is(err, proxywasm.ErrBadArgument) || !strings.Contains(err.Error(), `cluster "c"`) {
		t.Errorf("err = %v, want ErrBadArgument naming the cluster", err)
	}
	// Outside any callback the response could not be routed: refused
	// before anything is dispatched.
	_, err = vm.DispatchHttpCall("c", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "c"}}, nil, nil, 10, func(int, int, int) {})
	if !errors.Is(err, proxywasm.ErrBadArgument) || len(host.GetCallouts()) != 0 {
		t.Errorf("dispatch outside a callback: err = %v, %d callouts", err, len(host.GetCallouts()))
	}
}

func TestSharedData(t *testing.T) {
	host := start(t, &hooks{}, nil)
	vm := host.VM()
	_, _, err := vm.GetSharedData("k")
	if !errors.Is(err, proxywasm.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	must(t, vm.SetSharedData("k", []byte("v1"), 0))
	v, cas, err := vm.GetSharedData("k")
	must(t, err)
	if string(v) != "v1" || cas == 0 {
		t.Fatalf("get = %q cas %d", v, cas)
	}
	host.PutSharedData("k", []byte("other vm")) // another VM wins the race
	if err := vm.SetSharedData("k", []byte("v2"), cas); !errors.Is(err, proxywasm.ErrCasMismatch) {
		t.Fatalf("stale CAS: err = %v, want ErrCasMismatch", err)
	}
	_, cas, _ = vm.GetSharedData("k")
	must(t, vm.SetSharedData("k", []byte("v2"), cas))
	if got, _, _ := host.GetSharedDataValue("k"); string(got) != "v2" {
		t.Errorf("value = %q, want v2", got)
	}
}

func TestSharedQueues(t *testing.T) {
	var got []string
	var qid uint32
	host := start(t, &hooks{
		pluginStart: func(vm *proxywasm.VM, _ int) bool {
			var err error
			qid, err = vm.RegisterSharedQueue("events")
			return err == nil
		},
		queueReady: func(vm *proxywasm.VM, id uint32) {
			for {
				b, err := vm.DequeueSharedQueue(id)
				if errors.Is(err, proxywasm.ErrEmpty) {
					return
				}
				must(t, err)
				got = append(got, string(b))
			}
		},
	}, proxytest.NewEmulatorOption().WithVMID("vm1"))
	vm := host.VM()
	id, err := vm.ResolveSharedQueue("vm1", "events")
	must(t, err)
	if id != qid {
		t.Errorf("resolved %d, registered %d", id, qid)
	}
	if _, err := vm.ResolveSharedQueue("vm1", "nope"); !errors.Is(err, proxywasm.ErrNotFound) {
		t.Errorf("unknown queue: %v", err)
	}
	must(t, vm.EnqueueSharedQueue(qid, []byte("a")))
	if _, ok := host.EnqueueToQueue("vm1", "events", []byte("b")); !ok {
		t.Fatal("the host cannot find the queue")
	}
	if host.GetQueueSize(qid) != 2 {
		t.Fatalf("queue size %d", host.GetQueueSize(qid))
	}
	host.CallOnQueueReady(qid)
	if !slices.Equal(got, []string{"a", "b"}) || host.GetQueueSize(qid) != 0 {
		t.Errorf("dequeued %q, %d left", got, host.GetQueueSize(qid))
	}
	if err := vm.EnqueueSharedQueue(999, nil); !errors.Is(err, proxywasm.ErrNotFound) {
		t.Errorf("enqueue to unknown queue: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	host := start(t, &hooks{}, nil)
	vm := host.VM()
	c := vm.DefineCounterMetric("requests_total")
	c.Increment(2)
	c.Increment(3)
	g := vm.DefineGaugeMetric("inflight")
	g.Record(10)
	g.Add(-4)
	hm := vm.DefineHistogramMetric("latency_us")
	hm.Record(7)
	hm.Record(9)
	if c.Value() != 5 || g.Value() != 6 || hm.Value() != 16 {
		t.Errorf("guest values: counter %d gauge %d histogram %d", c.Value(), g.Value(), hm.Value())
	}
	if v, err := host.GetCounterMetric("requests_total"); err != nil || v != 5 {
		t.Errorf("counter = %d, %v", v, err)
	}
	if v, err := host.GetGaugeMetric("inflight"); err != nil || v != 6 {
		t.Errorf("gauge = %d, %v", v, err)
	}
	if v, err := host.GetHistogramMetric("latency_us"); err != nil || !slices.Equal(v, []uint64{7, 9}) {
		t.Errorf("histogram = %v, %v", v, err)
	}
	if again := vm.DefineCounterMetric("requests_total"); again != c {
		t.Errorf("redefining a counter returned a new id %d (was %d)", again.ID(), c.ID())
	}
	if _, err := vm.DefineGaugeMetricErr("requests_total"); !errors.Is(err, proxywasm.ErrBadArgument) {
		t.Errorf("redefining a counter as a gauge: %v", err)
	}
}

func TestProperties(t *testing.T) {
	host := start(t, &hooks{}, proxytest.NewEmulatorOption().
		WithProperty([]string{"source", "address"}, []byte("10.0.0.1:80")).
		WithProperty([]string{"request", "headers"}, []byte(nil)))
	vm := host.VM()
	v, err := vm.GetProperty([]string{"source", "address"})
	must(t, err)
	if string(v) != "10.0.0.1:80" {
		t.Errorf("source.address = %q", v)
	}
	if _, err := vm.GetProperty([]string{"source", "port"}); !errors.Is(err, proxywasm.ErrNotFound) {
		t.Errorf("missing property: %v", err)
	}
	if _, err := vm.GetProperty(nil); !errors.Is(err, proxywasm.ErrBadArgument) {
		t.Errorf("empty path: %v", err)
	}
	must(t, vm.SetProperty([]string{"filter_state", "mw.dye"}, []byte("canary")))
	if got, ok := host.GetPropertyValue([]string{"filter_state", "mw.dye"}); !ok || string(got) != "canary" {
		t.Errorf("set property = %q, %v", got, ok)
	}
	m, err := vm.GetPropertyMap([]string{"request", "headers"})
	if err != nil || len(m) != 0 {
		t.Errorf("empty map property = %v, %v", m, err)
	}
}

func TestLogs(t *testing.T) {
	host := start(t, &hooks{}, proxytest.NewEmulatorOption().WithLogLevel(proxywasm.LogLevelWarn))
	vm := host.VM()
	vm.LogTrace("t")
	vm.LogDebugf("d%d", 1)
	vm.LogInfo("i")
	vm.LogWarnf("w%s", "x")
	vm.LogError("e")
	vm.LogCriticalf("c%v", true)
	tests := []struct {
		got  []string
		want string
	}{
		{host.GetTraceLogs(), "t"}, {host.GetDebugLogs(), "d1"}, {host.GetInfoLogs(), "i"},
		{host.GetWarnLogs(), "wx"}, {host.GetErrorLogs(), "e"}, {host.GetCriticalLogs(), "ctrue"},
	}
	for i, tt := range tests {
		if !slices.Equal(tt.got, []string{tt.want}) {
			t.Errorf("level %d logs = %q, want [%q]", i, tt.got, tt.want)
		}
	}
	if l, err := vm.GetLogLevel(); err != nil || l != proxywasm.LogLevelWarn {
		t.Errorf("log level = %v, %v", l, err)
	}
}

func TestTickAndStreamDone(t *testing.T) {
	ticks := 0
	var doneIDs []uint32
	var pathAtDone string
	host := start(t, &hooks{
		pluginStart: func(vm *proxywasm.VM, _ int) bool { return vm.SetTickPeriodMilliSeconds(100) == nil },
		tick:        func(*proxywasm.VM) { ticks++ },
		streamDone: func(vm *proxywasm.VM, id uint32) {
			doneIDs = append(doneIDs, id)
			pathAtDone, _ = vm.GetHttpRequestHeader(":path")
		},
	}, nil)
	if host.GetTickPeriod() != 100 {
		t.Errorf("tick period %d", host.GetTickPeriod())
	}
	host.Tick()
	host.Tick()
	if ticks != 2 {
		t.Errorf("ticks %d", ticks)
	}
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, baseRequest, true)
	host.CompleteHttpContext(id)
	if !slices.Equal(doneIDs, []uint32{id}) || pathAtDone != "/a" {
		t.Errorf("OnHttpStreamDone ran for %v and read :path %q", doneIDs, pathAtDone)
	}
}

func TestCloseAndResume(t *testing.T) {
	host := start(t, &hooks{
		reqHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
			must(t, vm.CloseHttpRequest())
			return proxywasm.ActionPause
		},
		respHeaders: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
			must(t, vm.ResumeHttpResponse())
			return proxywasm.ActionPause
		},
		respBody: func(vm *proxywasm.VM, _ uint32, _ int, _ bool) proxywasm.Action {
			must(t, vm.CloseHttpResponse())
			return proxywasm.ActionContinue
		},
	}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, baseRequest, true)
	host.CallOnResponseHeaders(id, nil, false)
	host.CallOnResponseBody(id, nil, true)
	if req, resp := host.IsStreamClosed(id); !req || !resp {
		t.Errorf("closed request %v response %v", req, resp)
	}
	if _, resp := host.GetResumeCount(id); resp != 1 {
		t.Errorf("response resumed %d times", resp)
	}
}

func TestGetCurrentTimeAndForeign(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	host := start(t, &hooks{}, proxytest.NewEmulatorOption().WithClock(func() time.Time { return at }))
	vm := host.VM()
	if got := vm.GetCurrentTime(); !got.Equal(at) {
		t.Errorf("GetCurrentTime = %v, want %v", got, at)
	}
	host.RegisterForeignFunction("echo", func(b []byte) []byte { return append(b, '!') })
	out, err := vm.CallForeignFunction("echo", []byte("hi"))
	if err != nil || string(out) != "hi!" {
		t.Errorf("foreign = %q, %v", out, err)
	}
	if _, err := vm.CallForeignFunction("nope", nil); !errors.Is(err, proxywasm.ErrNotFound) {
		t.Errorf("unknown foreign function: %v", err)
	}
}

func TestHostcallsWithoutHost(t *testing.T) {
	// A VM whose emulator was reset has no host: every hostcall fails
	// cleanly instead of crashing.
	host, reset := proxytest.NewHostEmulator(nil)
	reset()
	vm := host.VM()
	if _, err := vm.GetHttpRequestHeaders(); !errors.Is(err, proxywasm.ErrInternalFailure) {
		t.Errorf("GetHttpRequestHeaders without a host: %v", err)
	}
	if err := vm.SetSharedData("k", nil, 0); !errors.Is(err, proxywasm.ErrInternalFailure) {
		t.Errorf("SetSharedData without a host: %v", err)
	}
	if got := vm.GetCurrentTime(); time.Since(got) > time.Minute {
		t.Errorf("GetCurrentTime without a host = %v, want the WASI clock", got)
	}
}

// TestInterleavedStreams runs several streams at once, as Envoy does in one
// VM: each callback must reach its own context.
func TestInterleavedStreams(t *testing.T) {
	var done []uint32
	host := start(t, &hooks{
		reqHeaders: func(vm *proxywasm.VM, id uint32, _ int, _ bool) proxywasm.Action {
			p, _ := vm.GetHttpRequestHeader(":path")
			must(t, vm.AddHttpRequestHeader("x-ctx", fmt.Sprint(id)+p))
			return proxywasm.ActionContinue
		},
		respHeaders: func(vm *proxywasm.VM, id uint32, _ int, _ bool) proxywasm.Action {
			must(t, vm.AddHttpResponseHeader("x-ctx", fmt.Sprint(id)))
			return proxywasm.ActionContinue
		},
		streamDone: func(vm *proxywasm.VM, id uint32) { done = append(done, id) },
	}, nil)
	a, b, c := host.InitializeHttpContext(), host.InitializeHttpContext(), host.InitializeHttpContext()
	host.CallOnRequestHeaders(b, [][2]string{{":path", "/b"}}, true)
	host.CallOnRequestHeaders(a, [][2]string{{":path", "/a"}}, true)
	host.CompleteHttpContext(b)
	host.CallOnResponseHeaders(a, nil, true)
	host.CallOnRequestHeaders(c, [][2]string{{":path", "/c"}}, true)
	host.CompleteHttpContext(c)
	host.CompleteHttpContext(a)
	for id, want := range map[uint32]string{a: fmt.Sprint(a) + "/a", b: fmt.Sprint(b) + "/b", c: fmt.Sprint(c) + "/c"} {
		if got := host.GetCurrentRequestHeaders(id); got[len(got)-1] != [2]string{"x-ctx", want} {
			t.Errorf("stream %d request headers %q, want x-ctx %q", id, got, want)
		}
	}
	if got := host.GetCurrentResponseHeaders(a); !slices.Equal(got, [][2]string{{"x-ctx", fmt.Sprint(a)}}) {
		t.Errorf("stream %d response headers %q", a, got)
	}
	if !slices.Equal(done, []uint32{b, c, a}) {
		t.Errorf("OnHttpStreamDone order %v, want %v", done, []uint32{b, c, a})
	}
	// A deleted context is gone: a late callback for it is ignored.
	d := host.InitializeHttpContext()
	host.CompleteHttpContext(d)
	if got := host.CallOnRequestHeaders(d, [][2]string{{":path", "/d"}}, true); got != types.ActionContinue {
		t.Errorf("callback on a deleted context: %v", got)
	}
	if got := host.GetCurrentRequestHeaders(d); len(got) != 1 {
		t.Errorf("a deleted context's filter ran: %q", got)
	}
}
