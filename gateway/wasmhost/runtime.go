package wasmhost

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// RuntimeConfig configures a Runtime.
type RuntimeConfig struct {
	// CacheDir holds wazero's on-disk compilation cache. Empty means no disk
	// cache (modules are still compiled once per Runtime).
	CacheDir string
	// MemoryLimitPages caps the linear memory of every instance, in 64 KiB
	// pages. Zero means 2048 pages (128 MiB).
	MemoryLimitPages uint32
	// NoCallDeadline compiles guests without wazero's termination checks
	// (WithCloseOnContextDone(false)), so PluginConfig.CallTimeout is NOT
	// enforced: a guest stuck in a loop holds its instance and stream forever.
	// It removes a goroutine that wazero starts per call into the guest
	// (about 0.3 µs each, 6+ calls per request; see docs/bench/wasmhost.md).
	// Only for filters that are trusted and reviewed.
	NoCallDeadline bool
	// Interpreter selects wazero's interpreter instead of its compiler. It is
	// about 30× slower; use it only where the compiler is unsupported.
	Interpreter bool
}

// Runtime is a proxy-wasm host: one wazero runtime with the proxy-wasm and
// WASI host modules, the compiled modules (once per sha256), and the state
// that Envoy shares across plugins of one vm_id (shared data, shared queues)
// or host-wide (metrics). It is safe for concurrent use.
type Runtime struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache

	mu      sync.Mutex
	modules map[string]*moduleEntry

	noDeadline bool

	shared  *sharedData
	queues  *sharedQueues
	metrics *metricStore
}

type moduleEntry struct {
	once sync.Once
	mod  *Module
	err  error
}

// Module is a compiled proxy-wasm module.
type Module struct {
	compiled wazero.CompiledModule
	sha256   string
	abi      ABIVersion
	size     int
}

// SHA256 returns the lowercase hex sha256 of the module bytes.
func (m *Module) SHA256() string { return m.sha256 }

// ABI returns the proxy-wasm ABI version the module exports.
func (m *Module) ABI() ABIVersion { return m.abi }

// NewRuntime returns a Runtime. Close it to release compiled code.
func NewRuntime(ctx context.Context, cfg RuntimeConfig) (*Runtime, error) {
	if cfg.MemoryLimitPages == 0 {
		cfg.MemoryLimitPages = 2048
	}
	rc := wazero.NewRuntimeConfigCompiler()
	if cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rc = rc.WithCloseOnContextDone(!cfg.NoCallDeadline).WithMemoryLimitPages(cfg.MemoryLimitPages)
	r := &Runtime{
		noDeadline: cfg.NoCallDeadline,
		modules:    map[string]*moduleEntry{},
		shared:     newSharedData(),
		queues:     newSharedQueues(),
		metrics:    newMetricStore(),
	}
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache in %s: %w: choose a writable directory", cfg.CacheDir, err)
		}
		r.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	r.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	// Envoy exposes WASI under both names: current SDKs import
	// wasi_snapshot_preview1, older ones (Rust, emscripten) wasi_unstable.
	for _, name := range []string{wasi_snapshot_preview1.ModuleName, "wasi_unstable"} {
		b := r.rt.NewHostModuleBuilder(name)
		wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
		if _, err := b.Instantiate(ctx); err != nil {
			_ = r.Close(ctx)
			return nil, fmt.Errorf("instantiate %s: %w", name, err)
		}
	}
	if _, err := r.envModule().Instantiate(ctx); err != nil {
		_ = r.Close(ctx)
		return nil, fmt.Errorf("instantiate proxy-wasm host module: %w", err)
	}
	return r, nil
}

// Close releases every instance and compiled module of the runtime.
func (r *Runtime) Close(ctx context.Context) error {
	err := r.rt.Close(ctx)
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
	e.once.Do(func() { e.mod, e.err = r.compile(ctx, key, wasm) })
	if e.err != nil {
		r.mu.Lock()
		delete(r.modules, key) // let a later call retry
		r.mu.Unlock()
	}
	return e.mod, e.err
}

func (r *Runtime) compile(ctx context.Context, key string, wasm []byte) (*Module, error) {
	cm, err := r.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("compile wasm module %s: %w", key[:12], err)
	}
	exports := cm.ExportedFunctions()
	m := &Module{compiled: cm, sha256: key, size: len(wasm)}
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

func newModuleConfig(name string, stderr *logWriter) wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithName(name).
		WithStartFunctions(). // _initialize or _start are called by the host
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithStdout(stderr).
		WithStderr(stderr)
}

// Evict forgets the compiled module with this sha256 and releases its code,
// so a module no longer configured does not stay in memory. Close the
// plugins built on it first: they cannot start new instances afterwards.
// Evicting an unknown sha256 is not an error.
func (r *Runtime) Evict(ctx context.Context, sha256 string) error {
	r.mu.Lock()
	e := r.modules[sha256]
	delete(r.modules, sha256)
	r.mu.Unlock()
	if e == nil {
		return nil
	}
	e.once.Do(func() { e.err = fmt.Errorf("wasm module %s was evicted", sha256) })
	if e.mod == nil {
		return nil
	}
	return e.mod.compiled.Close(ctx)
}
