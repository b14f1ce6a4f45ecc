package meter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// loopModule: spin(n) counts n down in a loop (no imports, no globals).
var loopModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x05, 0x01, 0x60, 0x01, 0x7f, 0x00,
	0x03, 0x02, 0x01, 0x00,
	0x07, 0x08, 0x01, 0x04, 's', 'p', 'i', 'n', 0x00, 0x00,
	0x0a, 0x10, 0x01, 0x0e,
	0x00, 0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, 0x0b,
}

// host is a wazero runtime without termination checks, with env.f (x+1) and
// the check: it counts its calls, returns every, and panics once stop is set.
type host struct {
	rt     wazero.Runtime
	checks atomic.Int64
	every  atomic.Int32
	stop   atomic.Bool
}

var errStop = errors.New("stopped by the check")

func newHost(t testing.TB) *host {
	t.Helper()
	ctx := context.Background()
	h := &host{rt: wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(false))}
	t.Cleanup(func() { _ = h.rt.Close(ctx) })
	h.every.Store(1 << 12)
	if _, err := h.rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, s []uint64) { s[0] = uint64(uint32(s[0]) + 1) }), []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export("f").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.NewHostModuleBuilder(ImportModule).NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, s []uint64) {
			h.checks.Add(1)
			if h.stop.Load() {
				panic(errStop)
			}
			s[0] = uint64(h.every.Load())
		}), nil, []api.ValueType{api.ValueTypeI32}).
		Export(ImportName).Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

var seq atomic.Int64

func (h *host) instantiate(t testing.TB, wasm []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	cm, err := h.rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	m, err := h.rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("m"+strconv.FormatInt(seq.Add(1), 10)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLoopIsCounted: an instrumented loop calls the check once per `every`
// iterations, and computes what the original does.
func TestLoopIsCounted(t *testing.T) {
	h := newHost(t)
	metered, err := Instrument(loopModule)
	if err != nil {
		t.Fatal(err)
	}
	for _, every := range []int32{1, 3, 1 << 12} {
		h.every.Store(every)
		h.checks.Store(0)
		const n = 100_000
		if _, err := h.instantiate(t, metered).ExportedFunction("spin").Call(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		// The first header calls the check (countdown 0), then every
		// `every` headers.
		if want := int64(1 + (n-1)/int(every)); h.checks.Load() != want {
			t.Errorf("every %d: %d checks for %d loop iterations, want %d", every, h.checks.Load(), n, want)
		}
	}
	h.checks.Store(0)
	if _, err := h.instantiate(t, loopModule).ExportedFunction("spin").Call(context.Background(), 1000); err != nil || h.checks.Load() != 0 {
		t.Fatalf("original module: err %v, %d checks; want none", err, h.checks.Load())
	}
}

// TestCheckStopsLoop: a check that panics stops a call looping for ever,
// soon, in a runtime without termination checks.
func TestCheckStopsLoop(t *testing.T) {
	h := newHost(t)
	metered, err := Instrument(loopModule)
	if err != nil {
		t.Fatal(err)
	}
	spin := h.instantiate(t, metered).ExportedFunction("spin")
	timer := time.AfterFunc(20*time.Millisecond, func() { h.stop.Store(true) })
	defer timer.Stop()
	start := time.Now()
	_, err = spin.Call(context.Background(), 0) // 0 - 1 wraps: 2^32 iterations
	if !errors.Is(err, errStop) {
		t.Fatalf("err %v after %v, want the check's panic", err, time.Since(start))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stopped after %v", took)
	}
}

// TestRefused: what the walker does not know is refused with ErrUnsupported,
// never passed through.
func TestRefused(t *testing.T) {
	simd := append([]byte(nil), loopModule...)
	// Replace i32.const 1; i32.sub (41 01 6b) in spin's body by an unknown
	// 0xfd (SIMD) prefix: the walker refuses it before anyone validates.
	for i := len(simd) - 1; i > 2; i-- {
		if simd[i-2] == 0x41 && simd[i-1] == 0x01 && simd[i] == 0x6b {
			simd[i-2] = 0xfd
			break
		}
	}
	if _, err := Instrument(simd); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("SIMD: err %v, want ErrUnsupported", err)
	}
	for _, bad := range [][]byte{nil, []byte("\x00asm\x02\x00\x00\x00"), loopModule[:len(loopModule)-3]} {
		if _, err := Instrument(bad); err == nil {
			t.Errorf("Instrument(%x) accepted a broken module", bad)
		}
	}
}

// TestGenerated: generated modules compute the same results and keep their
// function names once instrumented, with a check at every loop header and
// at every 4096th.
func TestGenerated(t *testing.T) {
	for seed := range 200 {
		in := make([]byte, 256)
		x := uint32(seed*2654435761 + 1)
		for i := range in {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			in[i] = byte(x)
		}
		differential(t, in)
	}
}

// differential compares a generated module with its instrumented copy.
func differential(t testing.TB, in []byte) {
	t.Helper()
	g := &gen{in: in}
	wasm, n := g.module()
	h := newHost(t)
	if _, err := h.rt.CompileModule(context.Background(), wasm); err != nil {
		t.Fatalf("the generator made an invalid module: %v (input %x)", err, in)
	}
	metered, err := Instrument(wasm)
	if err != nil {
		t.Fatalf("Instrument: %v (input %x)", err, in)
	}
	for _, every := range []int32{1, 1 << 12} {
		h.every.Store(every)
		orig, inst := h.instantiate(t, wasm), h.instantiate(t, metered)
		for i := range n {
			name := fmt.Sprintf("f%d", i)
			fo, fi := orig.ExportedFunction(name), inst.ExportedFunction(name)
			if a, b := fo.Definition().DebugName(), fi.Definition().DebugName(); a != b {
				t.Fatalf("%s is named %q, instrumented %q", name, a, b)
			}
			for _, arg := range []uint64{0, 1, 12345, 0xffffffff} {
				ro, erro := fo.Call(context.Background(), arg)
				ri, erri := fi.Call(context.Background(), arg)
				if (erro == nil) != (erri == nil) || (erro == nil && ro[0] != ri[0]) {
					t.Fatalf("%s(%d): original %v %v, instrumented %v %v (input %x)", name, arg, ro, erro, ri, erri, in)
				}
			}
		}
		if g := orig.ExportedGlobal; g == nil {
			t.Fatal("no globals")
		}
	}
}

// FuzzInstrument: generated modules stay valid and compute the same
// results once instrumented.
func FuzzInstrument(f *testing.F) {
	f.Add([]byte{4, 5, 5, 3, 1, 0, 2, 6, 7, 8})
	f.Add([]byte{1, 3, 14, 15, 16, 17, 12, 13, 11, 10, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		differential(t, in)
	})
}

// FuzzInstrumentAny: for any bytes wazero accepts as a module, Instrument
// either refuses them (ErrUnsupported) or returns a module wazero accepts.
func FuzzInstrumentAny(f *testing.F) {
	f.Add(loopModule)
	g := &gen{in: []byte{3, 5, 1, 6, 7, 8, 14, 15, 16}}
	wasm, _ := g.module()
	f.Add(wasm)
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(false))
	f.Cleanup(func() { _ = rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		if CheckBounds(wasm) != nil {
			return // the host never hands these to wazero (see TestCheckBounds)
		}
		cm, err := compileRecovered(ctx, rt, wasm)
		if err != nil {
			return // the host refuses it too (a panic included: wasmhost's compileModule)
		}
		_ = cm.Close(ctx)
		metered, err := Instrument(wasm)
		if errors.Is(err, ErrUnsupported) {
			return
		}
		if err != nil {
			t.Fatalf("wazero accepts the module, Instrument fails: %v", err)
		}
		cm, err = rt.CompileModule(ctx, metered)
		if err != nil {
			t.Fatalf("wazero accepts the module but not its instrumented copy: %v", err)
		}
		_ = cm.Close(ctx)
	})
}

// TestBrTableLoopCounted: a loop closed by br_table (not br_if) is counted
// too: a generated function that is one such loop of 5 iterations passes
// its loop header, and so the check, 5 times.
func TestBrTableLoopCounted(t *testing.T) {
	// 1 function; 1 op: case 18 (br_table loop), 4%5+1 = 5 iterations; its
	// body: 1 op, case 1 (multiply by 3).
	g := &gen{in: []byte{0, 0, 18, 4, 0, 1, 3}}
	wasm, _ := g.module()
	metered, err := Instrument(wasm)
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t)
	h.every.Store(1)
	m := h.instantiate(t, metered)
	h.checks.Store(0) // the start function's loop ran at instantiation
	if _, err := m.ExportedFunction("f0").Call(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if got := h.checks.Load(); got != 5 {
		t.Fatalf("%d checks, want 5 (one per iteration)", got)
	}
}

// compileRecovered compiles as the host does: a panic in wazero is an
// error (see wasmhost's compileModule).
func compileRecovered(ctx context.Context, rt wazero.Runtime, wasm []byte) (cm wazero.CompiledModule, err error) {
	defer func() {
		if r := recover(); r != nil {
			cm, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return rt.CompileModule(ctx, wasm)
}
