package abi

import (
	"testing"
	"unsafe"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// effHost records SetEffectiveContext; every other hostcall fails.
type effHost struct {
	unsetHost
	effective []uint32
}

func (h *effHost) SetEffectiveContext(id uint32) Status {
	h.effective = append(h.effective, id)
	return StatusOK
}

type testVM struct {
	types.DefaultVMContext
	s       *State
	streams map[uint32]*testStream
}

func (v *testVM) NewPluginContext(uint32) types.PluginContext { return &testPlugin{vm: v} }

type testPlugin struct {
	types.DefaultPluginContext
	vm *testVM
}

func (p *testPlugin) NewHttpContext(id uint32) types.HttpContext {
	st := &testStream{s: p.vm.s}
	p.vm.streams[id] = st
	return st
}

type testStream struct {
	types.DefaultHttpContext
	s       *State
	headers int
	pinned  int // len(vm.pinned) seen inside the callback after allocating
}

func (s *testStream) OnHttpRequestHeaders(n int, _ bool) types.Action {
	s.headers = n
	// What the host does inside a hostcall: allocate guest memory, twice
	// past the arena's buffer size (small buffers come from the arena).
	s.s.Allocate(arenaMax + 1)
	s.s.Allocate(16)
	s.s.Allocate(arenaMax + 100)
	s.pinned = len(s.s.pinned)
	return types.ActionPause
}

func setup(t *testing.T) (*testVM, *effHost, *State) {
	t.Helper()
	h := &effHost{}
	vm := NewState(h)
	v := &testVM{s: vm, streams: map[uint32]*testStream{}}
	vm.SetVMContext(v)
	vm.OnContextCreate(1, 0)
	if !vm.OnVMStart(1, 0) || !vm.OnConfigure(1, 0) {
		t.Fatal("start failed")
	}
	return v, h, vm
}

func TestPinnedUntilCallbackReturns(t *testing.T) {
	v, _, vm := setup(t)
	vm.OnContextCreate(2, 1)
	if a := vm.OnRequestHeaders(2, 7, true); a != types.ActionPause {
		t.Fatalf("action %v", a)
	}
	if v.streams[2].headers != 7 {
		t.Errorf("numHeaders %d", v.streams[2].headers)
	}
	if v.streams[2].pinned != 2 {
		t.Errorf("inside the callback %d buffers pinned, want 2", v.streams[2].pinned)
	}
	if len(vm.pinned) != 0 {
		t.Errorf("%d buffers still pinned after the callback returned", len(vm.pinned))
	}
}

// TestArenaAllocate: small buffers are carved from one chunk without
// overlapping, zeroed and without spare capacity, and Taken finds them (and
// pinned ones, which it unpins) in place; a chunk replaced while a carved
// buffer awaits its take is still found.
func TestArenaAllocate(t *testing.T) {
	s := NewState(nil)
	s.depth = 1 // inside a callback
	addr := func(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
	a, b := s.Allocate(100), s.Allocate(0)
	if len(a) != 100 || cap(a) != 100 || len(b) != 1 || cap(b) != 1 {
		t.Fatalf("len/cap %d/%d and %d/%d", len(a), cap(a), len(b), cap(b))
	}
	if addr(b) != addr(a)+100 {
		t.Errorf("buffers not carved one after the other: %#x, %#x", addr(a), addr(b))
	}
	if len(s.pinned) != 0 {
		t.Errorf("%d small buffers pinned, want 0 (the arena holds them)", len(s.pinned))
	}
	copy(a, "hello")
	if got := s.Taken(addr(a)+1, 4); string(got) != "ello" || cap(got) != 4 {
		t.Errorf("Taken = %q (cap %d)", got, cap(got))
	}
	if s.Taken(addr(a), 200) != nil || s.Taken(addr(a)-1, 1) != nil {
		t.Error("Taken accepted bytes outside the buffers handed out")
	}
	// Fill the chunk: the next small buffer comes from a new one, and the
	// old chunk stays reachable for a take until the callback returns.
	for range arenaChunk / arenaMax {
		s.Allocate(arenaMax)
	}
	if len(s.retired) == 0 {
		t.Fatal("no chunk retired after filling the arena")
	}
	if got := s.Taken(addr(a), 5); string(got) != "hello" {
		t.Errorf("Taken in a retired chunk = %q", got)
	}
	big := s.Allocate(arenaMax + 1)
	if len(s.pinned) != 1 {
		t.Fatalf("%d large buffers pinned, want 1", len(s.pinned))
	}
	if got := s.Taken(addr(big), 10); len(got) != 10 || len(s.pinned) != 0 {
		t.Errorf("Taken of a large buffer: len %d, %d still pinned", len(got), len(s.pinned))
	}
	for _, x := range s.Allocate(arenaMax) {
		if x != 0 {
			t.Fatal("a carved buffer is not zeroed")
		}
	}
	s.leave(0)
	if len(s.retired) != 0 {
		t.Errorf("%d chunks still retired after the callback returned", len(s.retired))
	}
}

func TestStreamRegistry(t *testing.T) {
	v, _, vm := setup(t)
	// Three live streams: the newest is "hot", the others spill to the map.
	for _, id := range []uint32{2, 3, 4} {
		vm.OnContextCreate(id, 1)
	}
	for _, id := range []uint32{3, 2, 4} {
		vm.OnRequestHeaders(id, int(id), false)
		if v.streams[id].headers != int(id) {
			t.Errorf("stream %d got numHeaders %d", id, v.streams[id].headers)
		}
	}
	for _, id := range []uint32{4, 2} {
		vm.OnDelete(id)
		if _, ok := vm.stream(id); ok {
			t.Errorf("stream %d still registered after proxy_on_delete", id)
		}
	}
	if e, ok := vm.stream(3); !ok || e.rootID != 1 {
		t.Errorf("stream 3 lost: %v %v", e, ok)
	}
	if vm.rootOf(3) != 1 || vm.rootOf(1) != 1 {
		t.Error("rootOf is wrong")
	}
	vm.OnDelete(1)
	if vm.plugin(1) != nil {
		t.Error("plugin 1 still registered after proxy_on_delete")
	}
}

func TestHTTPCallResponseRouting(t *testing.T) {
	_, h, vm := setup(t)
	vm.OnContextCreate(2, 1)
	var got []uint32
	dispatch := func(ctx uint32) uint32 {
		token := uint32(100 + ctx)
		prev := vm.enter(ctx)
		vm.RegisterHTTPCallout(token, func(n, _, _ int) { got = append(got, vm.ActiveContextID(), uint32(n)) })
		vm.leave(prev)
		return token
	}
	t2 := dispatch(2)
	t1 := dispatch(1)
	vm.OnHTTPCallResponse(1, t2, 3, 0, 0) // Envoy: the root context id
	vm.OnHTTPCallResponse(2, t1, 4, 0, 0) // a stream id is mapped to its plugin
	vm.OnHTTPCallResponse(1, t2, 5, 0, 0) // already answered: ignored
	want := []uint32{2, 3, 1, 4}
	if len(got) != len(want) {
		t.Fatalf("callbacks saw %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("callbacks saw %v, want %v", got, want)
		}
	}
	if len(h.effective) != 1 || h.effective[0] != 2 {
		t.Errorf("effective contexts set %v, want [2] (the dispatching stream)", h.effective)
	}
	// A stream deleted before its response: the callback does not run.
	vm.OnContextCreate(3, 1)
	t3 := dispatch(3)
	vm.OnDelete(3)
	vm.OnHTTPCallResponse(1, t3, 1, 0, 0)
	if len(got) != 4 {
		t.Errorf("callback ran for a deleted stream: %v", got)
	}
}

// recyclingPlugin records the contexts given back to it.
type recyclingPlugin struct {
	testPlugin
	back []types.HttpContext
}

func (p *recyclingPlugin) RecycleHttpContext(h types.HttpContext) { p.back = append(p.back, h) }

type recyclingVM struct{ testVM }

func (v *recyclingVM) NewPluginContext(uint32) types.PluginContext {
	return &recyclingPlugin{testPlugin: testPlugin{vm: &v.testVM}}
}

// TestRecycleHttpContext: a recycling plugin gets each stream's context
// back at proxy_on_delete, after the stream is gone, and only then.
func TestRecycleHttpContext(t *testing.T) {
	vm := NewState(&effHost{})
	v := &recyclingVM{testVM{s: vm, streams: map[uint32]*testStream{}}}
	vm.SetVMContext(v)
	vm.OnContextCreate(1, 0)
	p := vm.plugin(1).ctx.(*recyclingPlugin)
	vm.OnContextCreate(2, 1)
	vm.OnContextCreate(3, 1)
	vm.OnLog(2)
	if len(p.back) != 0 {
		t.Fatalf("context given back before proxy_on_delete: %v", p.back)
	}
	vm.OnDelete(2)
	if len(p.back) != 1 || p.back[0] != types.HttpContext(v.streams[2]) {
		t.Fatalf("after deleting stream 2 the plugin got %v, want its context", p.back)
	}
	if _, alive := vm.stream(2); alive {
		t.Error("stream 2 still registered when its context was given back")
	}
	vm.OnDelete(1) // a plugin context is not an HTTP context
	if len(p.back) != 1 {
		t.Errorf("deleting the plugin gave back %d contexts", len(p.back)-1)
	}
}
