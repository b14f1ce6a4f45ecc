package kittest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// Build builds the wasm main package pkg (a path as go build takes it,
// relative to the test's directory, e.g. "./wasm") with the standard
// toolchain (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared) into dir
// and returns the module's bytes.
func Build(pkg, dir string) ([]byte, error) {
	out := filepath.Join(dir, "guest.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %v\n%s", pkg, err, msg)
	}
	return os.ReadFile(out)
}

// MustBuild is Build into a temporary directory of tb, failing tb on error.
func MustBuild(tb testing.TB, pkg string) []byte {
	tb.Helper()
	b, err := Build(pkg, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Guests builds guest packages once per test binary and compiles each once
// per runtime: a runtime with the host's per-call deadlines, and one without
// (wasmhost.RuntimeConfig.NoCallDeadline, the gateway's option for trusted,
// reviewed filters). Both share a disk compilation cache. The zero value is
// ready; a test binary keeps one in a package variable and calls Main from
// its TestMain.
type Guests struct {
	mu   sync.Mutex
	dir  string
	wasm map[string]built
	rts  [2]*wasmhost.Runtime // [0] with call deadlines, [1] without
	mods [2]map[string]*wasmhost.Module
}

type built struct {
	b   []byte
	err error
}

// Main runs the tests, releases what g holds and exits.
func (g *Guests) Main(m *testing.M) {
	code := m.Run()
	g.Close()
	os.Exit(code)
}

// Close closes the runtimes and removes the temporary directory.
func (g *Guests) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, rt := range g.rts {
		if rt != nil {
			_ = rt.Close(context.Background())
		}
		g.rts[i], g.mods[i] = nil, nil
	}
	if g.dir != "" {
		_ = os.RemoveAll(g.dir)
	}
	g.dir, g.wasm = "", nil
}

func (g *Guests) tempDir(tb testing.TB) string {
	tb.Helper()
	if g.dir == "" {
		dir, err := os.MkdirTemp("", "guests-")
		if err != nil {
			tb.Fatal(err)
		}
		g.dir = dir
	}
	return g.dir
}

// CacheDir is the compilation cache directory for runtimes a test makes
// itself.
func (g *Guests) CacheDir(tb testing.TB) string {
	tb.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	return filepath.Join(g.tempDir(tb), "cache")
}

// Wasm returns the module built from pkg (see Build), building it on first
// use.
func (g *Guests) Wasm(tb testing.TB, pkg string) []byte {
	tb.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.wasmLocked(tb, pkg)
}

func (g *Guests) wasmLocked(tb testing.TB, pkg string) []byte {
	tb.Helper()
	if g.wasm == nil {
		g.wasm = map[string]built{}
	}
	w, ok := g.wasm[pkg]
	if !ok {
		dir := filepath.Join(g.tempDir(tb), fmt.Sprintf("build-%d", len(g.wasm)))
		if err := os.Mkdir(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		w.b, w.err = Build(pkg, dir)
		g.wasm[pkg] = w
	}
	if w.err != nil {
		tb.Fatal(w.err)
	}
	return w.b
}

// Compiled returns the module built from pkg, compiled in the runtime with
// per-call deadlines.
func (g *Guests) Compiled(tb testing.TB, pkg string) (*wasmhost.Runtime, *wasmhost.Module) {
	tb.Helper()
	return g.compiled(tb, pkg, 0)
}

// CompiledFast returns the module built from pkg, compiled in the runtime
// without per-call deadlines.
func (g *Guests) CompiledFast(tb testing.TB, pkg string) (*wasmhost.Runtime, *wasmhost.Module) {
	tb.Helper()
	return g.compiled(tb, pkg, 1)
}

func (g *Guests) compiled(tb testing.TB, pkg string, fast int) (*wasmhost.Runtime, *wasmhost.Module) {
	tb.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	wasm := g.wasmLocked(tb, pkg)
	ctx := context.Background()
	if g.rts[fast] == nil {
		cache := filepath.Join(g.dir, "cache")
		if fast == 1 {
			cache += "-fast"
		}
		rt, err := wasmhost.NewRuntime(ctx, wasmhost.RuntimeConfig{CacheDir: cache, NoCallDeadline: fast == 1})
		if err != nil {
			tb.Fatal(err)
		}
		g.rts[fast], g.mods[fast] = rt, map[string]*wasmhost.Module{}
	}
	if m := g.mods[fast][pkg]; m != nil {
		return g.rts[fast], m
	}
	m, err := g.rts[fast].Compile(ctx, wasm)
	if err != nil {
		tb.Fatal(err)
	}
	g.mods[fast][pkg] = m
	return g.rts[fast], m
}

// Start starts a plugin of mod in rt with cfg and closes it when the test
// ends. A zero cfg.PoolSize is runtime.GOMAXPROCS(0); logs, when not nil,
// receives the plugin's log.
func Start(tb testing.TB, rt *wasmhost.Runtime, mod *wasmhost.Module, cfg wasmhost.PluginConfig, logs *LogSink) (*wasmhost.Plugin, error) {
	tb.Helper()
	if cfg.PoolSize == 0 {
		cfg.PoolSize = runtime.GOMAXPROCS(0)
	}
	if logs != nil {
		cfg.Logger = slog.New(logs)
	}
	p, err := rt.NewPlugin(context.Background(), mod, cfg)
	if err == nil {
		tb.Cleanup(p.Close)
	}
	return p, err
}
