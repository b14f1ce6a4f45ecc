package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshwarden/meshwarden/gateway/wasmhost/internal/meter"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// meterInterval is how many loop headers an instrumented guest runs between
// two deadline checks. A check is a call into Go (≈ 20–50 ns); 4096 loop
// iterations of a tight loop take a few µs, of a Go guest's functions (a
// loop header at every function entry) some 100 µs, so a check costs well
// under 1 % and an overdue call is stopped, and the Go scheduler and garbage
// collector reach the goroutine (native guest code cannot be preempted),
// within well under a millisecond.
const meterInterval = 1 << 12

// errCallTimeout stops an instrumented guest whose call is past its
// deadline: deadlineCheck panics with it and wazero unwinds the guest.
var errCallTimeout = errors.New("call ran past its deadline (CallTimeout)")

// deadlineModule builds the host module that instrumented guests import
// (package internal/meter): one function, called at every meterInterval-th
// loop header.
func deadlineModule(rt wazero.Runtime) wazero.HostModuleBuilder {
	return rt.NewHostModuleBuilder(meter.ImportModule).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(deadlineCheck), nil, []api.ValueType{i32}).
		Export(meter.ImportName)
}

// deadlineCheck stops the call if its instance is past its deadline or its
// context is cancelled, else re-arms the countdown. It never calls into the
// guest. A nested call (the guest allocator called from a hostcall) shares
// its instance's deadline: callStart is the outer call's.
func deadlineCheck(ctx context.Context, _ api.Module, s []uint64) {
	if in, _ := ctx.Value(instKey{}).(*instance); in != nil && in.overdue() {
		panic(errCallTimeout)
	}
	if err := ctx.Err(); err != nil {
		panic(fmt.Errorf("wasm call stopped: %w", err))
	}
	s[0] = meterInterval
}

// overdue reports whether the running call is past its CallTimeout (then
// marked timedOut), or was marked by the watchdog.
func (in *instance) overdue() bool {
	if in.timedOut.Load() {
		return true
	}
	start := in.callStart.Load()
	if start == 0 || int64(time.Since(in.p.epoch))-start <= int64(in.p.cfg.CallTimeout) {
		return false
	}
	in.timedOut.Store(true)
	return true
}
