package abi

import (
	"unsafe"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// HTTPCallback receives the response of a DispatchHttpCall.
type HTTPCallback = func(numHeaders, bodySize, numTrailers int)

type callout struct {
	contextID uint32 // the context that dispatched the call
	cb        HTTPCallback
}

type pluginEntry struct {
	id       uint32
	ctx      types.PluginContext
	callouts map[uint32]callout // by token
	// recycler is ctx as an HttpContextRecycler, or nil (asserted once).
	recycler HttpContextRecycler
}

type streamEntry struct {
	rootID uint32
	http   types.HttpContext
	tcp    types.TcpContext
}

// State is everything the guest remembers between callbacks: the VM context,
// the plugin and stream contexts by id, the pending HTTP callouts, the memory
// pinned for the host, and the return slots hostcalls write into.
//
// One State is one VM. A wasm module has exactly one, the package variable
// module of the wasip1 build: the host's callbacks are exported functions
// with no receiver, so the registry they reach is necessarily package-level
// there. A native build has no package-level State at all: a native host
// (package nullvm, or proxytest) creates one per instance with NewState and
// drives it through the On* methods, so instances run concurrently.
//
// A State is not safe for concurrent use: like a wasm instance, it runs one
// callback at a time.
type State struct {
	host      Host
	vmContext types.VMContext
	plugins   []*pluginEntry // few (usually one): a slice beats a map

	// Stream contexts. The most recently created one lives in hot, the
	// others in streams: a host like the gateway runs one stream per
	// instance at a time, so the common path touches no map (a Go map
	// access is many calls deep on wasm, about 0.1–0.2 µs each); Envoy
	// interleaves many streams per VM, which spill into the map.
	hotID   uint32
	hot     streamEntry
	streams map[uint32]streamEntry

	// active is the context of the callback being run; hostcalls that need a
	// context (DispatchHttpCall) read it.
	active uint32
	depth  int

	// pinned holds every large buffer proxy_on_memory_allocate handed to
	// the host during the current top-level callback, retired every arena
	// chunk replaced during it. Go's GC does not know the host holds a
	// pointer into them; without this reference it could free a buffer while
	// the host still writes into it. Cleared when the outermost callback
	// returns.
	pinned, retired [][]byte
	// arena is the chunk proxy_on_memory_allocate carves small buffers
	// from (arenaOff is its first free byte): the host asks for a buffer
	// for every value it returns (a header map, a property, a header), and
	// carving them from one chunk costs no Go allocation per value. A
	// carved buffer is written once by the host and never handed out
	// again; a chunk stays alive (Go's GC follows interior pointers) as
	// long as any value carved from it is referenced, and a full chunk is
	// simply replaced.
	arena    []byte
	arenaOff int

	// Return slots for hostcalls. They live in this heap object, never on a
	// goroutine stack: a hostcall may re-enter the guest (allocation), and a
	// growing stack would move a stack slot after its address was passed.
	slotPtr, slotSize, slotAux uint32
	slotU64                    uint64

	// pathScratch holds the serialized property path of the GetProperty
	// call under way: the host reads the path during the call only, so one
	// buffer per VM serves every call.
	pathScratch []byte
}

// PathScratch returns the VM's buffer for serialized property paths. (A
// method, not an exported field: proxywasm.VM has State's fields.)
func (s *State) PathScratch() *[]byte { return &s.pathScratch }

// NewState returns an empty registry whose hostcalls go to h (nil: every
// hostcall fails with StatusInternalFailure).
func NewState(h Host) *State {
	if h == nil {
		h = unsetHost{}
	}
	return &State{
		host:    h,
		streams: map[uint32]streamEntry{},
	}
}

// Host returns the host hostcalls go to.
func (s *State) Host() Host { return s.host }

// SetVMContext installs the filter's VM context.
func (s *State) SetVMContext(ctx types.VMContext) { s.vmContext = ctx }

// HasVMContext reports whether a VM context is installed.
func (s *State) HasVMContext() bool { return s.vmContext != nil }

// ActiveContextID returns the id of the context whose callback is running.
func (s *State) ActiveContextID() uint32 { return s.active }

// InCallback reports whether a callback of a known context is running, the
// precondition of DispatchHttpCall (its response is routed to the
// dispatching context's plugin).
func (s *State) InCallback() bool { return s.plugin(s.rootOf(s.active)) != nil }

// RegisterHTTPCallout remembers cb for the response to token, dispatched from
// the active context. Check InCallback before dispatching.
func (s *State) RegisterHTTPCallout(token uint32, cb HTTPCallback) {
	s.registerCallout(s.active, token, cb)
}

// PluginContextID returns the id of the plugin (root) context of the
// active context.
func (s *State) PluginContextID() uint32 { return s.rootOf(s.active) }

// RegisterPluginHTTPCallout remembers cb for the response to token,
// dispatched on behalf of the active context's plugin context (with it
// made effective): cb runs in the plugin context, whether or not the
// stream that was active still exists.
func (s *State) RegisterPluginHTTPCallout(token uint32, cb HTTPCallback) {
	s.registerCallout(s.rootOf(s.active), token, cb)
}

func (s *State) registerCallout(contextID, token uint32, cb HTTPCallback) {
	p := s.plugin(s.rootOf(s.active))
	if p == nil {
		return
	}
	if p.callouts == nil {
		p.callouts = map[uint32]callout{}
	}
	p.callouts[token] = callout{contextID: contextID, cb: cb}
}

func (s *State) rootOf(id uint32) uint32 {
	if st, ok := s.stream(id); ok {
		return st.rootID
	}
	return id
}

// plugin returns the plugin context id, or nil.
func (s *State) plugin(id uint32) *pluginEntry {
	for _, p := range s.plugins {
		if p.id == id {
			return p
		}
	}
	return nil
}

// stream returns the stream context id.
func (s *State) stream(id uint32) (streamEntry, bool) {
	if id == s.hotID && id != 0 {
		return s.hot, true
	}
	if len(s.streams) == 0 {
		return streamEntry{}, false
	}
	e, ok := s.streams[id]
	return e, ok
}

func (s *State) addStream(id uint32, e streamEntry) {
	if s.hotID != 0 {
		s.streams[s.hotID] = s.hot // spill the previous stream
	}
	s.hotID, s.hot = id, e
}

func (s *State) deleteStream(id uint32) {
	if id == s.hotID {
		s.hotID, s.hot = 0, streamEntry{}
		return
	}
	if len(s.streams) > 0 {
		delete(s.streams, id)
	}
}

func (s *State) deletePlugin(id uint32) {
	for i, p := range s.plugins {
		if p.id == id {
			s.plugins = append(s.plugins[:i], s.plugins[i+1:]...)
			return
		}
	}
}

// enter marks the start of a callback for context id.
func (s *State) enter(id uint32) (prev uint32) {
	s.depth++
	prev = s.active
	s.active = id
	return prev
}

// leave ends a callback; the outermost one releases the pinned buffers.
func (s *State) leave(prev uint32) {
	s.active = prev
	s.depth--
	if s.depth == 0 && len(s.pinned)+len(s.retired) > 0 { // clear is a call even when empty
		clear(s.pinned)
		s.pinned = s.pinned[:0]
		clear(s.retired)
		s.retired = s.retired[:0]
	}
}

// Sizes of the allocation arena: buffers up to arenaMax bytes are carved
// from chunks of arenaChunk bytes; larger ones are allocated alone.
const (
	arenaChunk = 32 << 10
	arenaMax   = 2 << 10
)

// Allocate is proxy_on_memory_allocate: it returns a zeroed buffer of size
// bytes that stays alive at least until the current top-level callback
// returns. Small buffers are carved from the arena chunk (no allocation);
// larger ones are allocated and pinned.
func (s *State) Allocate(size uint32) []byte {
	n := max(int(size), 1)
	if n > arenaMax {
		b := make([]byte, n)
		s.pinned = append(s.pinned, b)
		return b
	}
	if len(s.arena)-s.arenaOff < n {
		if s.arena != nil {
			// A buffer carved from the old chunk may not be taken yet.
			s.retired = append(s.retired, s.arena)
		}
		s.arena, s.arenaOff = make([]byte, arenaChunk), 0
	}
	b := s.arena[s.arenaOff : s.arenaOff+n : s.arenaOff+n]
	s.arenaOff += n
	return b
}

// String returns a copy of b as a string carved from the arena: no Go
// allocation for a short value (Allocate). Like every carved buffer it is
// written once, here, and never handed out again.
func (s *State) String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	c := s.Allocate(uint32(len(b)))
	copy(c, b)
	return unsafe.String(unsafe.SliceData(c), len(b))
}

// Taken returns the size bytes at address p when they lie in memory
// Allocate handed out (the arena or a pinned buffer), without a copy and
// with no spare capacity, or nil. A pinned buffer returned whole is unpinned
// (the host is done writing; the slice keeps it alive), so a callback that
// loops over hostcalls does not accumulate pinned buffers.
func (s *State) Taken(p uintptr, size int) []byte {
	if b := within(s.arena[:s.arenaOff], p, size); b != nil {
		return b
	}
	for _, r := range s.retired {
		if b := within(r, p, size); b != nil {
			return b
		}
	}
	for i := len(s.pinned) - 1; i >= 0; i-- {
		b := within(s.pinned[i], p, size)
		if b == nil {
			continue
		}
		if &b[0] == &s.pinned[i][0] {
			last := len(s.pinned) - 1
			s.pinned[i] = s.pinned[last]
			s.pinned[last] = nil
			s.pinned = s.pinned[:last]
		}
		return b
	}
	return nil
}

// within returns b's size bytes at address p, or nil when they do not lie
// in b.
func within(b []byte, p uintptr, size int) []byte {
	if len(b) == 0 || size <= 0 {
		return nil
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p < start || p-start >= uintptr(len(b)) || uintptr(len(b))-(p-start) < uintptr(size) {
		return nil
	}
	off := int(p - start)
	return b[off : off+size : off+size]
}

// OnContextCreate is proxy_on_context_create.
func (s *State) OnContextCreate(contextID, parentID uint32) {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if parentID == 0 {
		if s.vmContext == nil {
			panic("proxywasm: no VMContext: call proxywasm.SetVMContext from an init function of the main package (main is never called in a c-shared module)")
		}
		ctx := s.vmContext.NewPluginContext(contextID)
		r, _ := ctx.(HttpContextRecycler)
		s.plugins = append(s.plugins, &pluginEntry{id: contextID, ctx: ctx, recycler: r})
		return
	}
	p := s.plugin(parentID)
	if p == nil {
		panic("proxywasm: stream context created under an unknown plugin context")
	}
	if h := p.ctx.NewHttpContext(contextID); h != nil {
		s.addStream(contextID, streamEntry{rootID: parentID, http: h})
		return
	}
	if t := p.ctx.NewTcpContext(contextID); t != nil {
		s.addStream(contextID, streamEntry{rootID: parentID, tcp: t})
		return
	}
	panic("proxywasm: the plugin context returned neither an HttpContext nor a TcpContext")
}

// OnVMStart is proxy_on_vm_start.
func (s *State) OnVMStart(rootID uint32, vmConfigSize int) bool {
	prev := s.enter(rootID)
	defer s.leave(prev)
	if s.vmContext == nil {
		return false
	}
	return bool(s.vmContext.OnVMStart(vmConfigSize))
}

// OnConfigure is proxy_on_configure.
func (s *State) OnConfigure(rootID uint32, pluginConfigSize int) bool {
	prev := s.enter(rootID)
	defer s.leave(prev)
	p := s.plugin(rootID)
	if p == nil {
		return false
	}
	return bool(p.ctx.OnPluginStart(pluginConfigSize))
}

// OnTick is proxy_on_tick.
func (s *State) OnTick(rootID uint32) {
	prev := s.enter(rootID)
	defer s.leave(prev)
	if p := s.plugin(rootID); p != nil {
		p.ctx.OnTick()
	}
}

// OnQueueReady is proxy_on_queue_ready.
func (s *State) OnQueueReady(rootID, queueID uint32) {
	prev := s.enter(rootID)
	defer s.leave(prev)
	if p := s.plugin(rootID); p != nil {
		p.ctx.OnQueueReady(queueID)
	}
}

// OnDone is proxy_on_done. Stream contexts are always done; a plugin context
// answers with OnPluginDone (false: it calls PluginDone later).
func (s *State) OnDone(contextID uint32) bool {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if p := s.plugin(contextID); p != nil {
		return p.ctx.OnPluginDone()
	}
	return true
}

// OnLog is proxy_on_log: the end of a stream, headers still readable.
func (s *State) OnLog(contextID uint32) {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if s, ok := s.stream(contextID); ok {
		switch {
		case s.http != nil:
			s.http.OnHttpStreamDone()
		case s.tcp != nil:
			s.tcp.OnStreamDone()
		}
	}
}

// OnDelete is proxy_on_delete: the context is forgotten.
func (s *State) OnDelete(contextID uint32) {
	if e, ok := s.stream(contextID); ok {
		s.deleteStream(contextID)
		if e.http != nil {
			if p := s.plugin(e.rootID); p != nil && p.recycler != nil {
				p.recycler.RecycleHttpContext(e.http)
			}
		}
		return
	}
	s.deletePlugin(contextID)
}

// HttpContextRecycler is a PluginContext that is given back each HTTP
// context it made when the host deletes the stream (proxy_on_delete): no
// callback for that stream follows, so the plugin may reuse the context for
// a later stream instead of allocating one per stream. (A plugin-level
// method, asserted once per plugin: a type assertion per stream costs more
// in the wasm guest than the allocation it saves.)
type HttpContextRecycler interface {
	RecycleHttpContext(types.HttpContext)
}

// ResponseBodyIgnorer is an HTTP context whose OnHttpResponseBody and
// OnHttpResponseTrailers do nothing (they continue and call no hostcall)
// and that says so: a native host then leaves the response body and
// trailers out of the stream's callbacks and passes them on untouched.
type ResponseBodyIgnorer interface {
	IgnoresResponseBody() bool
}

// IgnoresResponseBody reports whether the stream's HTTP context is a
// ResponseBodyIgnorer that ignores the response body. Only a native host
// asks (a wasm host calls every callback). A panic in the context's method
// counts as false: the body callbacks then run as usual.
func (s *State) IgnoresResponseBody(contextID uint32) (ignores bool) {
	defer func() {
		if recover() != nil {
			ignores = false
		}
	}()
	i, ok := s.http(contextID).(ResponseBodyIgnorer)
	return ok && i.IgnoresResponseBody()
}

func (s *State) http(id uint32) types.HttpContext {
	e, _ := s.stream(id)
	return e.http
}

func (s *State) tcp(id uint32) types.TcpContext {
	e, _ := s.stream(id)
	return e.tcp
}

// OnRequestHeaders is proxy_on_request_headers.
func (s *State) OnRequestHeaders(contextID uint32, numHeaders int, endOfStream bool) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if h := s.http(contextID); h != nil {
		return h.OnHttpRequestHeaders(numHeaders, endOfStream)
	}
	return types.ActionContinue
}

// OnRequestBody is proxy_on_request_body.
func (s *State) OnRequestBody(contextID uint32, bodySize int, endOfStream bool) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if h := s.http(contextID); h != nil {
		return h.OnHttpRequestBody(bodySize, endOfStream)
	}
	return types.ActionContinue
}

// OnRequestTrailers is proxy_on_request_trailers.
func (s *State) OnRequestTrailers(contextID uint32, numTrailers int) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if h := s.http(contextID); h != nil {
		return h.OnHttpRequestTrailers(numTrailers)
	}
	return types.ActionContinue
}

// OnResponseHeaders is proxy_on_response_headers.
func (s *State) OnResponseHeaders(contextID uint32, numHeaders int, endOfStream bool) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if h := s.http(contextID); h != nil {
		return h.OnHttpResponseHeaders(numHeaders, endOfStream)
	}
	return types.ActionContinue
}

// OnResponseBody is proxy_on_response_body.
func (s *State) OnResponseBody(contextID uint32, bodySize int, endOfStream bool) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if h := s.http(contextID); h != nil {
		return h.OnHttpResponseBody(bodySize, endOfStream)
	}
	return types.ActionContinue
}

// OnResponseTrailers is proxy_on_response_trailers.
func (s *State) OnResponseTrailers(contextID uint32, numTrailers int) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if h := s.http(contextID); h != nil {
		return h.OnHttpResponseTrailers(numTrailers)
	}
	return types.ActionContinue
}

// OnHTTPCallResponse is proxy_on_http_call_response: it runs the callback
// registered for token with the dispatching context made effective again.
// Envoy passes the plugin (root) context, which owns the call; a stream
// context id is accepted too and mapped to its plugin.
func (s *State) OnHTTPCallResponse(contextID, token uint32, numHeaders, bodySize, numTrailers int) {
	rootID := s.rootOf(contextID)
	prev := s.enter(rootID)
	defer s.leave(prev)
	p := s.plugin(rootID)
	if p == nil {
		return
	}
	c, ok := p.callouts[token]
	if !ok {
		return
	}
	delete(p.callouts, token)
	if c.contextID != rootID {
		if _, alive := s.stream(c.contextID); !alive {
			return // the stream ended before the response came back
		}
		s.host.SetEffectiveContext(c.contextID)
	}
	s.active = c.contextID
	c.cb(numHeaders, bodySize, numTrailers)
}

// OnNewConnection is proxy_on_new_connection.
func (s *State) OnNewConnection(contextID uint32) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if t := s.tcp(contextID); t != nil {
		return t.OnNewConnection()
	}
	return types.ActionContinue
}

// OnDownstreamData is proxy_on_downstream_data.
func (s *State) OnDownstreamData(contextID uint32, size int, endOfStream bool) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if t := s.tcp(contextID); t != nil {
		return t.OnDownstreamData(size, endOfStream)
	}
	return types.ActionContinue
}

// OnDownstreamConnectionClose is proxy_on_downstream_connection_close.
func (s *State) OnDownstreamConnectionClose(contextID uint32, peer types.PeerType) {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if t := s.tcp(contextID); t != nil {
		t.OnDownstreamClose(peer)
	}
}

// OnUpstreamData is proxy_on_upstream_data.
func (s *State) OnUpstreamData(contextID uint32, size int, endOfStream bool) types.Action {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if t := s.tcp(contextID); t != nil {
		return t.OnUpstreamData(size, endOfStream)
	}
	return types.ActionContinue
}

// OnUpstreamConnectionClose is proxy_on_upstream_connection_close.
func (s *State) OnUpstreamConnectionClose(contextID uint32, peer types.PeerType) {
	prev := s.enter(contextID)
	defer s.leave(prev)
	if t := s.tcp(contextID); t != nil {
		t.OnUpstreamClose(peer)
	}
}
