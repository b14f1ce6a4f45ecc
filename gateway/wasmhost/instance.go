package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// instance is one module instance (one proxy-wasm VM). It is
// single-threaded: whoever holds mu (a stream running a callback, or the
// plugin's background loop) is the only caller into it. Many streams may be
// open on it at once, as on an Envoy VM.
type instance struct {
	p   *Plugin
	mod api.Module  // nil for a native instance
	mem guestMemory // mod's memory, or a native instance's scratch
	// ignoresRespBody asks a native instance whether a stream's context
	// ignores the response body (proxywasm.ResponseBodyIgnorer); nil for
	// wasm, whose callbacks all run.
	ignoresRespBody func(contextID uint32) bool
	ctx             context.Context // carries the instance to hostcalls; cancelled on deadline
	cancel          context.CancelFunc

	mu        sync.Mutex
	open      int         // streams bound to it (guarded by p.mu)
	dead      atomic.Bool // trapped, timed out or closed: never call it again
	discarded atomic.Bool
	// callStart is the running call's start (monotonic ns since p.epoch,
	// low bit set; 0 when idle) for an instrumented wasm instance, whose
	// deadlineCheck compares the clock with it. callSeq is the running
	// call's sequence number (0 when idle) for a native instance: the
	// watchdog times a call from when it first sees its number, so a call
	// into native code reads no clock (two clock reads per callback were a
	// fifth of the native chain's time).
	callStart atomic.Int64
	callSeq   atomic.Uint64
	timedOut  atomic.Bool
	seq       uint64 // calls made; the last one's number
	// sample is the xorshift state that picks the calls timed for the
	// latency histogram (one in latencySample); booted is set once the
	// start-up callbacks, which are always timed, are done.
	sample uint32
	booted bool

	f          exports
	stack      [8]uint64
	allocStack [1]uint64

	rootID   uint32
	nextID   uint32
	streams  map[uint32]*Stream
	cur      uint32  // effective context id of the running callback
	curS     *Stream // stream of cur, nil for the root context
	httpResp *HTTPCallResponse

	tickPeriod atomic.Int64 // ns; 0 = no ticks
	nextTick   atomic.Int64 // monotonic ns since p.epoch

	calls     map[uint32]*pendingCall
	nextToken uint32

	evMu sync.Mutex
	evs  []event
	// posted is closed, and replaced, when an event is posted: it wakes
	// every paused stream of the instance (one of them delivers the events,
	// each checks its own state).
	posted chan struct{}
}

// guestFunc is an export of a guest: a wazero api.Function, or a
// nativeExport of a native instance.
type guestFunc interface {
	CallWithStack(ctx context.Context, stack []uint64) error
}

type exports struct {
	alloc                                                         guestFunc
	initialize, start                                             guestFunc
	onContextCreate, onVMStart, onConfigure, onTick, onQueueReady guestFunc
	onRequestHeaders, onRequestBody, onRequestTrailers            guestFunc
	onResponseHeaders, onResponseBody, onResponseTrailers         guestFunc
	onDone, onLog, onDelete, onHTTPCallResponse                   guestFunc
}

type pendingCall struct {
	ctxID  uint32
	cancel context.CancelFunc
}

type eventKind int

const (
	evHTTP eventKind = iota
	evQueue
)

type event struct {
	kind  eventKind
	token uint32
	resp  HTTPCallResponse
	queue uint32
}

type instKey struct{}

// guestError reports a failed callback into a plugin: a trap (including a
// guest panic or running out of memory), a deadline, a paused stream that was
// never resumed, or a broken ABI contract.
type guestError struct {
	Plugin   string
	Callback string
	Kind     string // "trap", "timeout", "pause-timeout", "limit", "abi"
	Err      error
}

// Error implements error.
func (e *guestError) Error() string {
	return fmt.Sprintf("wasm plugin %q: %s in %s: %v", e.Plugin, e.Kind, e.Callback, e.Err)
}

// Unwrap returns the underlying wazero error.
func (e *guestError) Unwrap() error { return e.Err }

var _ error = (*guestError)(nil)

var errDead = errors.New("instance is no longer usable")

func newInstance(ctx context.Context, p *Plugin) (*instance, error) {
	if p.mod.native != nil {
		return newNativeInstance(ctx, p)
	}
	// Instance names are unique in the wazero runtime, across plugins: a
	// new version of a filter starts while its last known good runs.
	name := fmt.Sprintf("%s#%d", p.cfg.Name, p.r.seq.Add(1))
	mod, err := p.mod.rt.InstantiateModule(ctx, p.mod.compiled, newModuleConfig(name, p.stderr))
	if err != nil {
		return nil, fmt.Errorf("wasm plugin %q: instantiate: %w", p.cfg.Name, err)
	}
	in := newInstanceState(p)
	in.mod, in.mem = mod, mod.Memory()
	fn := mod.ExportedFunction
	in.f = exports{
		alloc:              fn("proxy_on_memory_allocate"),
		initialize:         fn("_initialize"),
		start:              fn("_start"),
		onContextCreate:    fn("proxy_on_context_create"),
		onVMStart:          fn("proxy_on_vm_start"),
		onConfigure:        fn("proxy_on_configure"),
		onTick:             fn("proxy_on_tick"),
		onQueueReady:       fn("proxy_on_queue_ready"),
		onRequestHeaders:   fn("proxy_on_request_headers"),
		onRequestBody:      fn("proxy_on_request_body"),
		onRequestTrailers:  fn("proxy_on_request_trailers"),
		onResponseHeaders:  fn("proxy_on_response_headers"),
		onResponseBody:     fn("proxy_on_response_body"),
		onResponseTrailers: fn("proxy_on_response_trailers"),
		onDone:             fn("proxy_on_done"),
		onLog:              fn("proxy_on_log"),
		onDelete:           fn("proxy_on_delete"),
		onHTTPCallResponse: fn("proxy_on_http_call_response"),
	}
	if in.f.alloc == nil {
		in.f.alloc = fn("malloc")
	}
	// Watched from its first call: start-up callbacks have the same
	// deadline as request callbacks.
	p.r.wd.watch(in)
	if err := in.boot(); err != nil {
		in.close()
		return nil, err
	}
	return in, nil
}

// newInstanceState returns an instance with its registries and context,
// before its module (wasm or native) is attached.
func newInstanceState(p *Plugin) *instance {
	in := &instance{
		p:       p,
		sample:  uint32(p.r.seq.Add(1)) | 1, // xorshift needs a nonzero state
		rootID:  1,
		nextID:  1,
		streams: map[uint32]*Stream{},
		calls:   map[uint32]*pendingCall{},
		posted:  make(chan struct{}),
	}
	// An instance outlives the stream that started it and the plugin's own
	// cancellation (streams still open keep theirs): only its deadline
	// cancels it.
	cctx, cancel := context.WithCancel(context.WithoutCancel(p.ctx))
	in.ctx, in.cancel = context.WithValue(cctx, instKey{}, in), cancel
	return in
}

// boot runs the module's initialiser and the root context's start-up, as
// Envoy does: _initialize (reactor) or _start, proxy_on_context_create(root),
// proxy_on_vm_start, proxy_on_configure.
func (in *instance) boot() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.cur = in.rootID
	switch {
	case in.f.initialize != nil:
		if _, err := in.call("_initialize", in.f.initialize); err != nil {
			return err
		}
	case in.f.start != nil:
		if _, err := in.call("_start", in.f.start); err != nil {
			return err
		}
	}
	if _, err := in.call("proxy_on_context_create", in.f.onContextCreate, uint64(in.rootID), 0); err != nil {
		return err
	}
	if in.f.onVMStart != nil {
		ok, err := in.call("proxy_on_vm_start", in.f.onVMStart, uint64(in.rootID), uint64(len(in.p.cfg.VMConfiguration)))
		if err != nil {
			return err
		}
		if uint32(ok) == 0 {
			return &guestError{Plugin: in.p.cfg.Name, Callback: "proxy_on_vm_start", Kind: "abi", Err: errors.New("the guest rejected the vm configuration (returned false)")}
		}
	}
	if in.f.onConfigure != nil {
		ok, err := in.call("proxy_on_configure", in.f.onConfigure, uint64(in.rootID), uint64(len(in.p.cfg.Configuration)))
		if err != nil {
			return err
		}
		if uint32(ok) == 0 {
			return &guestError{Plugin: in.p.cfg.Name, Callback: "proxy_on_configure", Kind: "abi", Err: errors.New("the guest rejected the plugin configuration (returned false)")}
		}
	}
	in.booted = true
	return nil
}

// call invokes fn with args. A nil fn (an optional callback the module does
// not export) returns 0. Any error marks the instance dead.
func (in *instance) call(name string, fn guestFunc, args ...uint64) (uint64, error) {
	if fn == nil {
		return 0, nil
	}
	if in.dead.Load() {
		return 0, &guestError{Plugin: in.p.cfg.Name, Callback: name, Kind: "trap", Err: errDead}
	}
	copy(in.stack[:], args)
	in.seq++
	timed := in.timed()
	native, metered := in.p.mod.native != nil, in.p.mod.deadline && in.p.mod.native == nil
	var start time.Duration
	if timed || metered {
		start = time.Since(in.p.epoch)
	}
	if native {
		in.callSeq.Store(in.seq)
	} else if metered {
		in.callStart.Store(int64(start) | 1)
	}
	err := fn.CallWithStack(in.ctx, in.stack[:])
	if native {
		in.callSeq.Store(0)
	} else if metered {
		in.callStart.Store(0)
	}
	in.p.stats.calls.Add(1)
	if timed {
		in.p.stats.observe(time.Since(in.p.epoch) - start)
	}
	if err != nil {
		in.die()
		kind := "trap"
		if in.timedOut.Load() {
			kind = "timeout"
			in.p.stats.timeouts.Add(1)
		} else {
			in.p.stats.traps.Add(1)
		}
		ge := &guestError{Plugin: in.p.cfg.Name, Callback: name, Kind: kind, Err: err}
		in.p.cfg.Logger.Warn("wasm guest failed; discarding the instance", "plugin", in.p.cfg.Name, "callback", name, "kind", kind, "err", err)
		return 0, ge
	}
	return in.stack[0], nil
}

// latencySample is how many callbacks there are, on average, per callback
// timed for the latency histogram once an instance has started: timing
// reads the clock twice, which costs more than a native filter's callback
// itself. Start-up callbacks are all timed.
const latencySample = 8

// timed reports whether the call about to run is timed for the latency
// histogram: every start-up call, then one in latencySample, picked by a
// xorshift so that no callback of a fixed cycle (a stream's six, say) is
// always or never picked.
func (in *instance) timed() bool {
	if !in.booted {
		return true
	}
	x := in.sample
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	in.sample = x
	return x%latencySample == 0
}

// allocate calls the guest allocator from inside a hostcall.
func (in *instance) allocate(size int) (uint32, bool) {
	if in.f.alloc == nil || size < 0 || uint64(size) > uint64(^uint32(0)) {
		return 0, false
	}
	in.allocStack[0] = uint64(size)
	if err := in.f.alloc.CallWithStack(in.ctx, in.allocStack[:]); err != nil {
		in.die()
		return 0, false
	}
	p := uint32(in.allocStack[0])
	if p == 0 {
		return 0, false
	}
	if _, ok := in.mem.Read(p, uint32(size)); !ok {
		return 0, false
	}
	return p, true
}

// post queues an event (an HTTP call response, a queue notification) for
// this instance and wakes whoever serves it.
func (in *instance) post(e event) {
	in.evMu.Lock()
	in.evs = append(in.evs, e)
	in.wakeLocked()
	in.evMu.Unlock()
	in.p.kick()
}

// die marks the instance dead and wakes its paused streams, which then fail
// at once (per their fail policy) instead of sleeping until an event that
// will never be delivered or their PauseTimeout. It runs with mu held once
// streams can see the instance, so a paused stream (which checks dead and
// takes posted with mu held) cannot miss the wake-up.
func (in *instance) die() {
	in.dead.Store(true)
	in.evMu.Lock()
	in.wakeLocked()
	in.evMu.Unlock()
}

// wakeLocked wakes every stream waiting on posted; it runs with evMu held.
func (in *instance) wakeLocked() {
	close(in.posted)
	in.posted = make(chan struct{})
}

// postedChan returns the channel the next post closes.
func (in *instance) postedChan() <-chan struct{} {
	in.evMu.Lock()
	defer in.evMu.Unlock()
	return in.posted
}

func (in *instance) hasEvents() bool {
	in.evMu.Lock()
	defer in.evMu.Unlock()
	return len(in.evs) > 0
}

// drainEvents delivers queued events; it must run with mu held. It reports
// whether it delivered anything.
func (in *instance) drainEvents() (bool, error) {
	in.evMu.Lock()
	evs := in.evs
	in.evs = nil
	in.evMu.Unlock()
	for _, e := range evs {
		if err := in.deliver(e); err != nil {
			return true, err // the instance is dead: the rest go with it
		}
	}
	return len(evs) > 0, nil
}

func (in *instance) deliver(e event) error {
	switch e.kind {
	case evHTTP:
		pc := in.calls[e.token]
		if pc == nil {
			return nil // the calling context is gone: Envoy cancels its calls
		}
		delete(in.calls, e.token)
		pc.cancel()
		caller := in.streams[pc.ctxID]
		if caller != nil {
			caller.pendingCalls--
		} else if pc.ctxID != in.rootID {
			return nil
		}
		in.setContext(in.rootID, nil)
		in.httpResp = &e.resp
		_, err := in.call("proxy_on_http_call_response", in.f.onHTTPCallResponse, uint64(in.rootID), uint64(e.token),
			uint64(len(e.resp.Headers)), uint64(len(e.resp.Body)), uint64(len(e.resp.Trailers)))
		in.httpResp = nil
		return err
	case evQueue:
		in.setContext(in.rootID, nil)
		_, err := in.call("proxy_on_queue_ready", in.f.onQueueReady, uint64(in.rootID), uint64(e.queue))
		return err
	}
	return nil
}

// tickDue reports whether the root context's tick is due at now.
func (in *instance) tickDue(now int64) bool {
	return in.tickPeriod.Load() > 0 && now >= in.nextTick.Load()
}

func (in *instance) tick() error {
	period := in.tickPeriod.Load()
	if period <= 0 {
		return nil
	}
	in.nextTick.Store(int64(time.Since(in.p.epoch)) + period)
	in.setContext(in.rootID, nil)
	_, err := in.call("proxy_on_tick", in.f.onTick, uint64(in.rootID))
	return err
}

func (in *instance) setContext(id uint32, s *Stream) {
	in.cur, in.curS = id, s
}

// close releases the module. It is safe to call more than once.
func (in *instance) close() {
	in.p.r.wd.forget(in)
	in.die()
	for _, pc := range in.calls {
		pc.cancel()
	}
	in.cancel()
	if in.mod != nil {
		_ = in.mod.Close(context.WithoutCancel(in.ctx))
	}
}

type apiFunc = guestFunc
