package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/gateway/wasmhost/internal/meter"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// spinModule is a hand-assembled module: spin(n) counts n down in a loop;
// probe() calls the host's env.probe.
var spinModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x08, 0x02, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x00, // types: (i32)->(), ()->()
	0x02, 0x0d, 0x01, 0x03, 'e', 'n', 'v', 0x05, 'p', 'r', 'o', 'b', 'e', 0x00, 0x01, // import env.probe
	0x03, 0x03, 0x02, 0x00, 0x01, // functions
	0x07, 0x10, 0x02, 0x04, 's', 'p', 'i', 'n', 0x00, 0x01, 0x05, 'p', 'r', 'o', 'b', 'e', 0x00, 0x02, // exports
	0x0a, 0x15, 0x02,
	0x0e, 0x00, 0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, 0x0b, // spin
	0x04, 0x00, 0x10, 0x00, 0x0b, // probe
}

// TestWazeroTerminationFacts pins down the wazero behaviour that made the
// host bound calls by instrumenting guests rather than with wazero's own
// termination checks (RATIONALE-wasmhost.md, "Deadlines"); if an upgrade
// changes it, this fails and the design can be revisited:
//
//  1. a module closed from another goroutine stops running code only when
//     it was compiled with termination checks (WithCloseOnContextDone(true));
//     without them the call runs to its end;
//  2. with termination checks, wazero starts a goroutine on every call into
//     the guest even when the context has no Done channel (upstream issue
//     #2466, PR #2533), so a Done-less context does not make deadlines cheaper.
func TestWazeroTerminationFacts(t *testing.T) {
	const n = 20_000_000
	ctx := context.Background()
	for _, checks := range []bool{false, true} {
		var inside int
		watchers := func() int {
			buf := make([]byte, 1<<20)
			return strings.Count(string(buf[:runtime.Stack(buf, true)]), "created by github.com/tetratelabs/wazero/internal/wasm.(*ModuleInstance).CloseModuleOnCanceledOrTimeout")
		}
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(checks))
		defer rt.Close(ctx)
		if _, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
			WithGoFunction(api.GoFunc(func(context.Context, []uint64) { inside = watchers() }), nil, nil).
			Export("probe").Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
		cm, err := rt.CompileModule(ctx, spinModule)
		if err != nil {
			t.Fatal(err)
		}
		inst := func(name string) api.Module {
			m, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName(name))
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		// 2: goroutines during a call with a Done-less context.
		// Other tests' runtimes may have watchers of their own alive (the
		// count is process-wide): count only the ones this call adds.
		m := inst("probe")
		before := watchers()
		if _, err := m.ExportedFunction("probe").Call(ctx); err != nil {
			t.Fatal(err)
		}
		inside -= before
		if want := map[bool]int{false: 0, true: 1}[checks]; inside != want {
			t.Errorf("termination checks %v: %d wazero watcher goroutines during a call with a Done-less context, want %d", checks, inside, want)
		}
		// 1: closing from another goroutine.
		full := time.Hour // the fastest of three uninterrupted runs
		spin := inst("full").ExportedFunction("spin")
		for range 3 {
			start := time.Now()
			if _, err := spin.Call(ctx, n); err != nil {
				t.Fatal(err)
			}
			full = min(full, time.Since(start))
		}
		// The close must land while the call runs: on a loaded machine the
		// timer may fire after a short call ended (then the call rightly
		// returns no error), so retry a few times until it lands inside.
		var took time.Duration
		for attempt := 0; ; attempt++ {
			m = inst(fmt.Sprintf("closed-%d", attempt))
			var closedAt atomic.Int64
			timer := time.AfterFunc(time.Millisecond, func() {
				closedAt.Store(time.Now().UnixNano())
				_ = m.CloseWithExitCode(ctx, 9)
			})
			start := time.Now()
			_, err = m.ExportedFunction("spin").Call(ctx, n)
			end := time.Now()
			took = end.Sub(start)
			timer.Stop()
			if c := closedAt.Load(); (c == 0 || c > end.UnixNano()) && attempt < 5 {
				continue // the close came after the call: try again
			}
			break
		}
		if err == nil {
			t.Fatalf("termination checks %v: a closed module's call returned no error", checks)
		}
		if interrupted := took < full/2; interrupted != checks {
			t.Errorf("termination checks %v: closed after 1 ms, the call took %v of its %v: interrupted=%v, want %v", checks, took, full, interrupted, checks)
		}
	}
}

// loopModule is a hand-assembled module without imports: spin(n) counts n
// down in a loop.
var loopModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x05, 0x01, 0x60, 0x01, 0x7f, 0x00, // type (i32)->()
	0x03, 0x02, 0x01, 0x00, // function 0: type 0
	0x07, 0x08, 0x01, 0x04, 's', 'p', 'i', 'n', 0x00, 0x00, // export spin
	0x0a, 0x10, 0x01, 0x0e,
	0x00, 0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, 0x0b, // spin
}

// TestInstrumentedCallsStop: the Runtime's wazero runtime has no termination
// checks of its own (a running call ignores its context), and the deadline
// instrumentation is what stops a looping guest: in the same runtime, an
// instrumented spin is stopped soon after its context's deadline, the
// original runs to its end. It fails if the instrumentation is lost (the
// instrumented call is not stopped) or if wazero's checks come back (the
// original is stopped too).
func TestInstrumentedCallsStop(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, RuntimeConfig{})
	metered, err := meter.Instrument(loopModule)
	if err != nil {
		t.Fatal(err)
	}
	spin := map[bool]api.Function{}
	for i, wasm := range [][]byte{loopModule, metered} {
		cm, err := r.rt.CompileModule(ctx, wasm)
		if err != nil {
			t.Fatal(err)
		}
		m, err := r.rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName(fmt.Sprintf("spin-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		spin[i == 1] = m.ExportedFunction("spin")
	}
	// Size the loop to run ≥ 300 ms uninterrupted.
	n := uint64(1 << 20)
	var full time.Duration
	for ; n < 1<<31; n *= 2 {
		start := time.Now()
		if _, err := spin[false].Call(ctx, n); err != nil {
			t.Fatal(err)
		}
		if full = time.Since(start); full >= 300*time.Millisecond {
			break
		}
	}
	const timeout = 20 * time.Millisecond
	for _, instrumented := range []bool{false, true} {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		_, err := spin[instrumented].Call(cctx, n)
		took := time.Since(start)
		cancel()
		if !instrumented {
			if err != nil || took < full/2 {
				t.Errorf("original module: err %v after %v of %v; want it to run to its end (no termination checks in the runtime)", err, took, full)
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) || took > full/2 {
			t.Errorf("instrumented module: err %v after %v (full run %v); want it stopped by its %v deadline", err, took, full, timeout)
		}
		t.Logf("instrumented spin stopped %v after its %v deadline (full run %v)", took-timeout, timeout, full)
	}
}

// instrumented reports whether m was compiled with the deadline
// instrumentation (it imports the deadline check).
func instrumented(m *Module) bool {
	for _, f := range m.compiled.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod == meter.ImportModule && name == meter.ImportName {
			return true
		}
	}
	return false
}
