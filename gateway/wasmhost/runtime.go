package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/meshwarden/meshwarden/gateway/wasmhost/internal/meter"
	"github.com/tetratelabs/wazero"
)

// RuntimeConfig configures a Runtime.
type RuntimeConfig struct {
	// CacheDir holds wazero's on-disk compilation cache. Empty means no disk
	// cache (modules are still compiled once per Runtime).
	CacheDir string
	// MemoryLimitPages caps the linear memory of every instance, in 64 KiB
	// pages. Zero means 2048 pages (128 MiB).
	MemoryLimitPages uint32
	// NoCallDeadline runs guests as they are, without the deadline
	// instrumentation (see CallDeadline), so PluginConfig.CallTimeout is NOT
	// enforced: a guest stuck in a loop holds its instance and stream
	// forever. It saves a countdown at every loop header (deadlines on cost
	// 1.0–1.3× off; see docs/BENCHMARKS.md). Only for filters that are
	// trusted and reviewed.
	NoCallDeadline bool
	// TrustedSHA256 lists modules (lowercase hex sha256 of the .wasm file,
	// as sha256sum prints it) that run without per-call deadlines while
	// every other module keeps them: NoCallDeadline for those modules only.
	// They are compiled as they are, without the deadline instrumentation;
	// shared data, shared queues and metrics stay common to all modules.
	// List only modules you reviewed and built yourself: a listed module
	// stuck in a loop holds its instance and stream forever.
	TrustedSHA256 []string
	// Interpreter selects wazero's interpreter instead of its compiler. It is
	// about 30× slower; use it only where the compiler is unsupported.
	Interpreter bool
	// Native lists the filters the host links as Go code: a module whose
	// sha256 is a NativeFilter's runs natively (nullvm), every other module
	// in wazero. Empty: every module runs in wazero.
	Native []NativeFilter
	// WASI selects the WASI surface guests get: WASIEnvoy (the default,
	// also for "") offers exactly Envoy's, so a guest that would fail in an
	// Envoy sidecar fails here too; WASIFull offers wazero's complete WASI.
	WASI WASIMode
}

// Runtime is a proxy-wasm host: one wazero runtime with the proxy-wasm, WASI
// and deadline host modules, the compiled modules (once per sha256), and the state
// that Envoy shares across plugins of one vm_id (shared data, shared queues)
// or host-wide (metrics). It is safe for concurrent use.
type Runtime struct {
	rt    wazero.Runtime // without wazero's termination checks: deadlines are instrumented
	cache wazero.CompilationCache

	trusted map[string]bool // sha256 → run without per-call deadlines
	native  map[string]*NativeFilter
	// hostcalls are the hostFuncs native instances call.
	hostcalls *hostcallTable

	mu      sync.Mutex
	modules map[string]*moduleEntry

	noDeadline bool
	wasi       WASIMode

	shared  *sharedData
	queues  *sharedQueues
	metrics *metricStore

	// life orders Compile before Close: compiling in a closed wazero
	// runtime panics inside wazero.
	life   sync.RWMutex
	closed bool

	wd  *watchdog     // enforces CallTimeout on every call of every instance
	seq atomic.Uint64 // instance names, unique in the wazero runtimes
}

type moduleEntry struct {
	once sync.Once
	mod  *Module
	err  error
}

// Module is a compiled proxy-wasm module.
type Module struct {
	rt       wazero.Runtime        // the runtime that compiled it, and instantiates it
	compiled wazero.CompiledModule // nil for a native module
	native   *NativeFilter         // the filter linked in its place, or nil
	sha256   string
	abi      ABIVersion
	size     int
	deadline bool // PluginConfig.CallTimeout is enforced: instrumented (or native)
}

// SHA256 returns the lowercase hex sha256 of the module bytes.
func (m *Module) SHA256() string { return m.sha256 }

// ABI returns the proxy-wasm ABI version the module exports.
func (m *Module) ABI() ABIVersion { return m.abi }

// CallDeadline reports whether calls into this module's instances are bounded
// by PluginConfig.CallTimeout: false under RuntimeConfig.NoCallDeadline and
// for modules listed in RuntimeConfig.TrustedSHA256. A bounded wasm module
// runs instrumented (package internal/meter): a countdown at every loop
// header calls the host, which stops a call past its deadline.
func (m *Module) CallDeadline() bool { return m.deadline }

// NewRuntime returns a Runtime. Close it to release compiled code.
func NewRuntime(ctx context.Context, cfg RuntimeConfig) (*Runtime, error) {
	if cfg.MemoryLimitPages == 0 {
		cfg.MemoryLimitPages = 2048
	}
	if cfg.WASI == "" {
		cfg.WASI = WASIEnvoy
	}
	if cfg.WASI != WASIEnvoy && cfg.WASI != WASIFull {
		return nil, fmt.Errorf("wasm WASI mode %q: want %q (Envoy's WASI surface) or %q (wazero's complete WASI)", cfg.WASI, WASIEnvoy, WASIFull)
	}
	rc := wazero.NewRuntimeConfigCompiler()
	if cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rc = rc.WithMemoryLimitPages(cfg.MemoryLimitPages)
	r := &Runtime{
		noDeadline: cfg.NoCallDeadline,
		wasi:       cfg.WASI,
		trusted:    map[string]bool{},
		modules:    map[string]*moduleEntry{},
		shared:     newSharedData(),
		queues:     newSharedQueues(),
		metrics:    newMetricStore(),
		wd:         newWatchdog(),
	}
	var err error
	if r.hostcalls, err = newHostcallTable(); err != nil {
		return nil, err
	}
	r.native = map[string]*NativeFilter{}
	for i := range cfg.Native {
		nf := &cfg.Native[i]
		sum := strings.ToLower(strings.TrimSpace(nf.SHA256))
		if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size || nf.New == nil || nf.Name == "" {
			return nil, fmt.Errorf("native filter %q: want a name, a constructor and the 64 hex digits of its official build's sha256, got %q", nf.Name, nf.SHA256)
		}
		r.native[sum] = nf
	}
	for _, sum := range cfg.TrustedSHA256 {
		sum = strings.ToLower(strings.TrimSpace(sum))
		if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("trusted wasm module %q: want the 64 hex digits of its sha256 (sha256sum FILE.wasm)", sum)
		}
		r.trusted[sum] = true
	}
	if cfg.CacheDir != "" {
		// wazero keys compiled code by the module's bytes: an instrumented
		// module and its original are cached apart.
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache in %s: %w: choose a writable directory", cfg.CacheDir, err)
		}
		r.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	// No termination checks of wazero's (a goroutine per call and a trip
	// to Go at every loop header): calls are bounded by the instrumentation
	// (instrument, deadlineCheck).
	if r.rt, err = newWazero(ctx, rc.WithCloseOnContextDone(false), cfg.WASI); err != nil {
		_ = r.Close(ctx)
		return nil, err
	}
	return r, nil
}

// newWazero returns a wazero runtime with the WASI, proxy-wasm and deadline
// host modules instantiated.
func newWazero(ctx context.Context, rc wazero.RuntimeConfig, wasi WASIMode) (wazero.Runtime, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	instantiate := instantiateWASI
	if wasi == WASIEnvoy {
		instantiate = instantiateEnvoyWASI
	}
	if err := instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	if _, err := envModule(rt).Instantiate(ctx); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate proxy-wasm host module: %w", err)
	}
	if _, err := deadlineModule(rt).Instantiate(ctx); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate deadline host module: %w", err)
	}
	return rt, nil
}

// Close releases every instance and compiled module of the runtime.
func (r *Runtime) Close(ctx context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.rt != nil {
		err = r.rt.Close(ctx)
	}
	r.wd.close()
	if r.cache != nil {
		if cerr := r.cache.Close(ctx); err == nil {
			err = cerr
		}
	}
	return err
}

// Compile compiles wasm once per sha256: later calls with the same bytes
// return the same Module. With a CacheDir the machine code also survives
// restarts.
func (r *Runtime) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	sum := sha256.Sum256(wasm)
	key := hex.EncodeToString(sum[:])
	r.mu.Lock()
	e, ok := r.modules[key]
	if !ok {
		e = &moduleEntry{}
		r.modules[key] = e
	}
	r.mu.Unlock()
	e.once.Do(func() {
		r.life.RLock()
		defer r.life.RUnlock()
		if r.closed {
			e.err = fmt.Errorf("compile wasm module %s: the wasm runtime is closed", key[:12])
			return
		}
		e.mod, e.err = r.compile(ctx, key, wasm)
	})
	if e.err != nil {
		r.mu.Lock()
		delete(r.modules, key) // let a later call retry
		r.mu.Unlock()
	}
	return e.mod, e.err
}

func (r *Runtime) compile(ctx context.Context, key string, wasm []byte) (*Module, error) {
	if nf := r.native[key]; nf != nil {
		// The official build of a filter the host links: nothing to compile.
		// Its instances are bounded by the watchdog as wasm ones are (checked
		// when a callback returns: native code is not interrupted).
		return &Module{native: nf, sha256: key, abi: ABI021, size: len(wasm), deadline: true}, nil
	}
	rt, deadline := r.rt, !r.noDeadline && !r.trusted[key]
	// Before any byte reaches wazero's decoder: it sizes its slices by the
	// counts a module declares, and a few bytes declaring billions of
	// imports would end this process out of memory.
	if err := meter.CheckBounds(wasm); err != nil {
		return nil, fmt.Errorf("wasm module %s refused before decoding: %w", key[:12], err)
	}
	code := wasm
	if deadline {
		var err error
		if code, err = meter.Instrument(wasm); err != nil {
			if !errors.Is(err, meter.ErrUnsupported) {
				// Malformed: wazero's decoder says best what is wrong.
				cm, cerr := compileModule(ctx, rt, wasm)
				if cerr != nil {
					return nil, fmt.Errorf("compile wasm module %s: %w", key[:12], cerr)
				}
				_ = cm.Close(ctx)
			}
			return nil, fmt.Errorf("wasm module %s: its calls cannot be bounded by CallTimeout: %w; only a module listed in TrustedSHA256 (or under NoCallDeadline) runs without that bound", key[:12], err)
		}
	}
	cm, err := compileModule(ctx, rt, code)
	if err != nil {
		return nil, fmt.Errorf("compile wasm module %s: %w", key[:12], err)
	}
	if r.wasi == WASIEnvoy {
		if err := checkEnvoyWASIImports(cm); err != nil {
			_ = cm.Close(ctx)
			return nil, fmt.Errorf("wasm module %s: %w", key[:12], err)
		}
	}
	exports := cm.ExportedFunctions()
	m := &Module{rt: rt, compiled: cm, sha256: key, size: len(wasm), deadline: deadline}
	switch {
	case exports["proxy_abi_version_0_2_1"] != nil:
		m.abi = ABI021
	case exports["proxy_abi_version_0_2_0"] != nil:
		m.abi = ABI020
	default:
		_ = cm.Close(ctx)
		return nil, fmt.Errorf("wasm module %s exports no proxy_abi_version_0_2_1 or proxy_abi_version_0_2_0: build it with a proxy-wasm SDK for ABI 0.2.x", key[:12])
	}
	if exports["proxy_on_memory_allocate"] == nil && exports["malloc"] == nil {
		_ = cm.Close(ctx)
		return nil, fmt.Errorf("wasm module %s exports neither proxy_on_memory_allocate nor malloc: the host cannot hand it data", key[:12])
	}
	return m, nil
}

// evict forgets the compiled module with this sha256 and releases its code,
// so a module no longer configured does not stay in memory. Close the
// plugins built on it first: they cannot start new instances afterwards.
// Evicting an unknown sha256 is not an error.
func (r *Runtime) evict(ctx context.Context, sha256 string) error {
	r.mu.Lock()
	e := r.modules[sha256]
	delete(r.modules, sha256)
	r.mu.Unlock()
	if e == nil {
		return nil
	}
	e.once.Do(func() { e.err = fmt.Errorf("wasm module %s was evicted", sha256) })
	if e.mod == nil || e.mod.compiled == nil {
		return nil
	}
	return e.mod.compiled.Close(ctx)
}

// compileModule is rt.CompileModule with a panic in wazero turned into an
// error: its validator (v1.12) indexes out of range on some malformed
// function bodies (found by FuzzInstrumentAny), and a panic there would end
// the gateway where a refusal of the one module is due.
func compileModule(ctx context.Context, rt wazero.Runtime, wasm []byte) (cm wazero.CompiledModule, err error) {
	defer func() {
		if r := recover(); r != nil {
			cm, err = nil, fmt.Errorf("wazero failed on the module (panic: %v)", r)
		}
	}()
	return rt.CompileModule(ctx, wasm)
}
