package wasmhost

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// WASIMode selects the WASI surface a guest gets (RuntimeConfig.WASI).
type WASIMode string

const (
	// WASIEnvoy offers exactly the WASI functions Envoy's host
	// (proxy-wasm-cpp-host) exports, with its answers: a module importing
	// any other WASI function fails to load, fd_read is ENOSYS, there are no
	// preopened directories, and poll_oneoff answers ENOSYS (errno 52) to a
	// call with any fd subscription. A guest that would die in Envoy dies
	// here first. The empty WASIMode means WASIEnvoy.
	WASIEnvoy WASIMode = "envoy"
	// WASIFull offers wazero's complete wasi_snapshot_preview1 (no files
	// are mounted). For guests that never run in Envoy.
	WASIFull WASIMode = "full"
)

// WASI errno values Envoy's host returns.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNosys   = 52
	errnoNotsup  = 58
)

// wasiRandomMax is cpp-host's random_get limit
// (PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES).
const wasiRandomMax = 64 << 10

// wasiFunc is one WASI function of Envoy's surface.
type wasiFunc struct {
	name   string
	params []api.ValueType
	fn     func(ctx context.Context, m api.Module, args []uint64) uint32
}

// envoyWASIFuncs are the WASI functions Envoy exports, with the answers
// filters/internal/v8host/host.mjs gives (see its README for the cpp-host
// code each follows).
var envoyWASIFuncs = []wasiFunc{
	{"fd_write", i32s(4), wasiFdWrite},
	{"fd_read", i32s(4), wasiErrno(errnoNosys)},
	{"fd_seek", []api.ValueType{i32, i64, i32, i32}, wasiErrno(errnoSuccess)},
	{"fd_close", i32s(1), wasiErrno(errnoSuccess)},
	{"fd_fdstat_get", i32s(2), wasiFdstatGet},
	{"fd_fdstat_set_flags", i32s(2), wasiErrno(errnoNosys)},
	{"fd_prestat_get", i32s(2), wasiErrno(errnoBadf)},
	{"fd_prestat_dir_name", i32s(3), wasiErrno(errnoNosys)},
	{"environ_get", i32s(2), wasiErrno(errnoSuccess)},
	{"environ_sizes_get", i32s(2), wasiZeroSizes},
	{"args_get", i32s(2), wasiErrno(errnoSuccess)},
	{"args_sizes_get", i32s(2), wasiZeroSizes},
	{"clock_time_get", []api.ValueType{i32, i64, i32}, wasiClockTimeGet},
	{"random_get", i32s(2), wasiRandomGet},
	{"sched_yield", nil, wasiErrno(errnoSuccess)},
	{"poll_oneoff", i32s(4), wasiPollOneoff},
}

// instantiateEnvoyWASI instantiates Envoy's WASI surface under every name
// in wasiModuleNames.
func instantiateEnvoyWASI(ctx context.Context, rt wazero.Runtime) error {
	for _, name := range wasiModuleNames {
		b := rt.NewHostModuleBuilder(name)
		for _, f := range envoyWASIFuncs {
			fn := f.fn
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
				s[0] = uint64(fn(ctx, m, s))
			}), f.params, []api.ValueType{i32}).Export(f.name)
		}
		// proc_exit: Envoy logs it and fails the VM; here the module exits
		// and the call ends with wazero's sys.ExitError (as wazero's own
		// proc_exit), which the host treats as a trap.
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
			code := uint32(s[0])
			_ = m.CloseWithExitCode(ctx, code)
			panic(sys.NewExitError(code))
		}), i32s(1), nil).Export("proc_exit")
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("instantiate %s: %w", name, err)
		}
	}
	return nil
}

func wasiErrno(e uint32) func(context.Context, api.Module, []uint64) uint32 {
	return func(context.Context, api.Module, []uint64) uint32 { return e }
}

// wasiFdWrite sends fd 1 and 2 to the plugin logger (as the guest's
// stdout/stderr in full mode); other fds are EBADF, as cpp-host's writevImpl.
func wasiFdWrite(ctx context.Context, m api.Module, a []uint64) uint32 {
	fd, iovs, n, nwritten := uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3])
	if fd != 1 && fd != 2 {
		return errnoBadf
	}
	mem := m.Memory()
	var out []byte
	for i := uint32(0); i < n; i++ {
		p, ok1 := mem.ReadUint32Le(iovs + 8*i)
		l, ok2 := mem.ReadUint32Le(iovs + 8*i + 4)
		if !ok1 || !ok2 {
			return errnoFault
		}
		b, ok := mem.Read(p, l)
		if !ok {
			return errnoFault
		}
		out = append(out, b...)
	}
	if in, _ := ctx.Value(instKey{}).(*instance); in != nil && len(out) > 0 {
		_, _ = in.p.stderr.Write(out)
	}
	if !mem.WriteUint32Le(nwritten, uint32(len(out))) {
		return errnoFault
	}
	return errnoSuccess
}

// wasiFdstatGet describes fd 1 and 2 as write-only character streams
// (rights_base FD_WRITE); every other fd is EBADF.
func wasiFdstatGet(_ context.Context, m api.Module, a []uint64) uint32 {
	fd, p := uint32(a[0]), uint32(a[1])
	if fd != 1 && fd != 2 {
		return errnoBadf
	}
	var st [24]byte
	binary.LittleEndian.PutUint64(st[8:], 64) // FD_WRITE
	if !m.Memory().Write(p, st[:]) {
		return errnoFault
	}
	return errnoSuccess
}

func wasiZeroSizes(_ context.Context, m api.Module, a []uint64) uint32 {
	if !m.Memory().WriteUint32Le(uint32(a[0]), 0) || !m.Memory().WriteUint32Le(uint32(a[1]), 0) {
		return errnoFault
	}
	return errnoSuccess
}

// monoBase anchors the monotonic clock; time.Since reads the monotonic
// reading. It is set once when the package loads and never written again.
var monoBase = time.Now()

// wasiClockTimeGet answers the realtime and monotonic clocks; the CPU-time
// clocks are ENOTSUP.
func wasiClockTimeGet(_ context.Context, m api.Module, a []uint64) uint32 {
	var t uint64
	switch uint32(a[0]) {
	case 0:
		t = uint64(time.Now().UnixNano())
	case 1:
		t = uint64(time.Since(monoBase).Nanoseconds()) + 1
	default:
		return errnoNotsup
	}
	if !m.Memory().WriteUint64Le(uint32(a[2]), t) {
		return errnoFault
	}
	return errnoSuccess
}

func wasiRandomGet(_ context.Context, m api.Module, a []uint64) uint32 {
	p, n := uint32(a[0]), uint32(a[1])
	if n > wasiRandomMax {
		return errnoInval
	}
	b, ok := m.Memory().Read(p, n)
	if !ok {
		return errnoFault
	}
	if _, err := rand.Read(b); err != nil {
		return errnoFault
	}
	return errnoSuccess
}

// maxPollSubscriptions bounds one poll_oneoff call (Go's runtime passes
// one or two); it also keeps nsubs*48 from overflowing.
const maxPollSubscriptions = 1024

// wasiPollOneoff answers a call whose subscriptions are all clocks with one
// event per subscription, after sleeping until the earliest relative
// timeout (bounded by the call's context); a call with any fd_read or
// fd_write subscription is ENOSYS, as in Envoy.
func wasiPollOneoff(ctx context.Context, m api.Module, a []uint64) uint32 {
	inPtr, outPtr, nsubs, neventsPtr := uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3])
	if nsubs == 0 || nsubs > maxPollSubscriptions {
		return errnoInval
	}
	mem := m.Memory()
	subs, ok := mem.Read(inPtr, nsubs*48)
	if !ok {
		return errnoFault
	}
	if _, ok := mem.Read(outPtr, nsubs*32); !ok {
		return errnoFault
	}
	wait := time.Duration(-1)
	for i := uint32(0); i < nsubs; i++ {
		s := subs[48*i : 48*i+48]
		if s[8] != 0 { // eventtype: 0 clock, 1 fd_read, 2 fd_write
			return errnoNosys
		}
		d := time.Duration(binary.LittleEndian.Uint64(s[24:])) // subscription_clock.timeout
		if binary.LittleEndian.Uint16(s[40:])&1 != 0 {         // subclockflags: abstime
			d = 0
		}
		if wait < 0 || d < wait {
			wait = d
		}
	}
	events := make([][32]byte, nsubs)
	for i := range events {
		copy(events[i][:8], subs[48*i:48*i+8]) // userdata; error 0, type clock
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	for i := range events {
		if !mem.Write(outPtr+32*uint32(i), events[i][:]) {
			return errnoFault
		}
	}
	if !mem.WriteUint32Le(neventsPtr, nsubs) {
		return errnoFault
	}
	return errnoSuccess
}

// EnvoyWASIFunctions returns the names of the WASI functions Envoy's host
// exports (under wasi_snapshot_preview1 and wasi_unstable): what a guest
// may import to run in Envoy.
func EnvoyWASIFunctions() []string {
	names := make([]string, 0, len(envoyWASIFuncs)+1)
	for _, f := range envoyWASIFuncs {
		names = append(names, f.name)
	}
	return append(names, "proc_exit")
}

// checkEnvoyWASIImports refuses a module that imports a WASI function
// Envoy's host does not export: Envoy would refuse to load it.
func checkEnvoyWASIImports(cm wazero.CompiledModule) error {
	allowed := map[string]bool{}
	for _, n := range EnvoyWASIFunctions() {
		allowed[n] = true
	}
	var missing []string
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if slices.Contains(wasiModuleNames, mod) && !allowed[name] {
			missing = append(missing, mod+"."+name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("imports %s, which Envoy's WASI does not offer, so Envoy would refuse to load it: build the guest without them (no os file access), or, if it never runs in Envoy, give it the full WASI (RuntimeConfig.WASI = full; gateway: --wasm-wasi=full)", strings.Join(missing, ", "))
	}
	return nil
}
