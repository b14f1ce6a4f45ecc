package wasmhost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/meshwarden/meshwarden/filters/proxywasm/nullvm"
)

// NativeFilter is a filter the host links as Go code and runs instead of a
// wasm module whose sha256 is the official build of the same source (Envoy's
// null VM): same ABI, same hostcall semantics, several times faster.
type NativeFilter struct {
	// Name names the filter in /config_dump, logs and errors ("dye").
	Name string
	// SHA256 is the lowercase hex sha256 of the official .wasm build of the
	// filter's source. A module with exactly these bytes runs natively.
	SHA256 string
	// New is the filter's VM context constructor (dye.NewVMContext).
	New nullvm.NewVMContext
}

// Runtime kinds, as Module.Runtime reports them.
const (
	RuntimeWasm   = "wasm"
	RuntimeNative = "native"
)

// Runtime reports how the module's instances run: RuntimeNative when its
// sha256 is a NativeFilter's (RuntimeConfig.Native), else RuntimeWasm.
func (m *Module) Runtime() string {
	if m.native != nil {
		return RuntimeNative
	}
	return RuntimeWasm
}

// NativeName returns the NativeFilter's name of a native module, "" for a
// wasm one.
func (m *Module) NativeName() string {
	if m.native == nil {
		return ""
	}
	return m.native.Name
}

// The native instance reuses everything a wasm instance has — the pool,
// the stream state machine, ticks, callouts, shared data and queues,
// metrics, limits, properties, the fail policy and the watchdog — and
// replaces only the two things that are wasm: the guest's exports become
// Go functions calling the nullvm.VM's On* methods (nativeExport), and the
// guest's linear memory becomes a scratch buffer (nativeMemory) through
// which nativeHost hands each hostcall to the very hostFunc that serves wasm
// guests. So a native filter cannot see different semantics than its wasm
// build: the differential tests check the filters, not two hosts.

// guestMemory is what the hostcalls use of a guest's linear memory.
// wazero's api.Memory implements it, and so does nativeMemory.
type guestMemory interface {
	Read(offset, byteCount uint32) ([]byte, bool)
	WriteUint32Le(offset, v uint32) bool
	WriteUint64Le(offset uint32, v uint64) bool
}

// nativeMemory is the scratch "linear memory" of a native instance: every
// hostcall resets it, writes its inputs and out-slots into it, lets the
// hostFunc read them and allocate its answer in it (bump allocation), then
// copies the answer out. Offset 0 is never handed out (it is the ABI's null).
type nativeMemory struct{ buf []byte }

const nativeMemoryBase = 8

func (m *nativeMemory) reset() { m.buf = m.buf[:nativeMemoryBase] }

// alloc returns the offset of n fresh zero bytes (8-aligned).
func (m *nativeMemory) alloc(n int) uint32 {
	off := (len(m.buf) + 7) &^ 7
	end := off + n
	if end > cap(m.buf) {
		nb := make([]byte, end, max(2*cap(m.buf), end, 4096))
		copy(nb, m.buf)
		m.buf = nb
	} else {
		m.buf = m.buf[:end]
		clear(m.buf[off:end])
	}
	return uint32(off)
}

func (m *nativeMemory) putString(s string) (ptr, size uint64) {
	if s == "" {
		return 0, 0
	}
	off := m.alloc(len(s))
	copy(m.buf[off:], s)
	return uint64(off), uint64(len(s))
}

func (m *nativeMemory) putBytes(b []byte) (ptr, size uint64) {
	if len(b) == 0 {
		return 0, 0
	}
	off := m.alloc(len(b))
	copy(m.buf[off:], b)
	return uint64(off), uint64(len(b))
}

func (m *nativeMemory) u32(off uint32) uint32 { return binary.LittleEndian.Uint32(m.buf[off:]) }
func (m *nativeMemory) u64(off uint32) uint64 { return binary.LittleEndian.Uint64(m.buf[off:]) }

// Read implements guestMemory.
func (m *nativeMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m.buf)) {
		return nil, false
	}
	return m.buf[off : off+n : off+n], true
}

// WriteUint32Le implements guestMemory.
func (m *nativeMemory) WriteUint32Le(off, v uint32) bool {
	if uint64(off)+4 > uint64(len(m.buf)) {
		return false
	}
	binary.LittleEndian.PutUint32(m.buf[off:], v)
	return true
}

// WriteUint64Le implements guestMemory.
func (m *nativeMemory) WriteUint64Le(off uint32, v uint64) bool {
	if uint64(off)+8 > uint64(len(m.buf)) {
		return false
	}
	binary.LittleEndian.PutUint64(m.buf[off:], v)
	return true
}

// nativeExport is one proxy_on_* export of a native instance: a guestFunc
// whose CallWithStack runs fn. A panic in the filter is
// recovered into an error, as a wasm trap is, and so is a call that ran past
// its deadline (native code cannot be interrupted: the watchdog marks it,
// and the instance is discarded when the call returns).
type nativeExport struct {
	in   *instance
	name string
	fn   func(stack []uint64)
}

var _ guestFunc = (*nativeExport)(nil)

// CallWithStack implements guestFunc.
func (f *nativeExport) CallWithStack(_ context.Context, stack []uint64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &nativePanic{export: f.name, value: r}
			// The stack is for the operator's log, not for the error that
			// reaches /config_dump and the fail policy.
			f.in.p.cfg.Logger.Error("native filter panicked", "plugin", f.in.p.cfg.Name, "callback", f.name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	f.fn(stack)
	if f.in.timedOut.Load() {
		return errNativeDeadline
	}
	return nil
}

// nativePanic is a panic of a native filter, recovered as a trap.
type nativePanic struct {
	export string
	value  any
}

func (e *nativePanic) Error() string {
	return fmt.Sprintf("native filter panicked in %s: %v", e.export, e.value)
}

var errNativeDeadline = errors.New("native callback ran past its deadline (CallTimeout); native code is not interrupted, the instance is discarded when it returns")

func b2u64(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// newNativeInstance is newInstance for a native module: the same instance,
// with a nullvm.VM for exports and a scratch buffer for memory.
func newNativeInstance(_ context.Context, p *Plugin) (*instance, error) {
	in := newInstanceState(p)
	mem := &nativeMemory{buf: make([]byte, nativeMemoryBase, 4096)}
	in.mem = mem
	h := &nativeHost{in: in, mem: mem, calls: p.r.hostcalls}
	vm := nullvm.New(h, p.mod.native.New)
	in.ignoresRespBody = vm.IgnoresResponseBody
	ex := func(name string, fn func(s []uint64)) guestFunc { return &nativeExport{in: in, name: name, fn: fn} }
	u := func(v uint64) uint32 { return uint32(v) }
	in.f = exports{
		alloc: ex("proxy_on_memory_allocate", func(s []uint64) { s[0] = uint64(mem.alloc(int(u(s[0])))) }),
		onContextCreate: ex("proxy_on_context_create", func(s []uint64) {
			vm.OnContextCreate(u(s[0]), u(s[1]))
		}),
		onVMStart: ex("proxy_on_vm_start", func(s []uint64) { s[0] = b2u64(vm.OnVMStart(u(s[0]), int(u(s[1])))) }),
		onConfigure: ex("proxy_on_configure", func(s []uint64) {
			s[0] = b2u64(vm.OnConfigure(u(s[0]), int(u(s[1]))))
		}),
		onTick:       ex("proxy_on_tick", func(s []uint64) { vm.OnTick(u(s[0])) }),
		onQueueReady: ex("proxy_on_queue_ready", func(s []uint64) { vm.OnQueueReady(u(s[0]), u(s[1])) }),
		onRequestHeaders: ex("proxy_on_request_headers", func(s []uint64) {
			s[0] = uint64(vm.OnRequestHeaders(u(s[0]), int(u(s[1])), s[2] != 0))
		}),
		onRequestBody: ex("proxy_on_request_body", func(s []uint64) {
			s[0] = uint64(vm.OnRequestBody(u(s[0]), int(u(s[1])), s[2] != 0))
		}),
		onRequestTrailers: ex("proxy_on_request_trailers", func(s []uint64) {
			s[0] = uint64(vm.OnRequestTrailers(u(s[0]), int(u(s[1]))))
		}),
		onResponseHeaders: ex("proxy_on_response_headers", func(s []uint64) {
			s[0] = uint64(vm.OnResponseHeaders(u(s[0]), int(u(s[1])), s[2] != 0))
		}),
		onResponseBody: ex("proxy_on_response_body", func(s []uint64) {
			s[0] = uint64(vm.OnResponseBody(u(s[0]), int(u(s[1])), s[2] != 0))
		}),
		onResponseTrailers: ex("proxy_on_response_trailers", func(s []uint64) {
			s[0] = uint64(vm.OnResponseTrailers(u(s[0]), int(u(s[1]))))
		}),
		onDone:   ex("proxy_on_done", func(s []uint64) { s[0] = b2u64(vm.OnDone(u(s[0]))) }),
		onLog:    ex("proxy_on_log", func(s []uint64) { vm.OnLog(u(s[0])) }),
		onDelete: ex("proxy_on_delete", func(s []uint64) { vm.OnDelete(u(s[0])) }),
		onHTTPCallResponse: ex("proxy_on_http_call_response", func(s []uint64) {
			vm.OnHTTPCallResponse(u(s[0]), u(s[1]), int(u(s[2])), int(u(s[3])), int(u(s[4])))
		}),
	}
	p.r.wd.watch(in)
	if err := in.boot(); err != nil {
		in.close()
		return nil, err
	}
	return in, nil
}
