package wasmhost

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// wasiModuleNames are the names WASI is imported under. Envoy exposes it
// under both: current SDKs import wasi_snapshot_preview1, older ones (Rust,
// emscripten) wasi_unstable.
var wasiModuleNames = []string{wasi_snapshot_preview1.ModuleName, "wasi_unstable"}

// instantiateWASI instantiates wazero's WASI host functions under every
// name in wasiModuleNames.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	for _, name := range wasiModuleNames {
		b := rt.NewHostModuleBuilder(name)
		wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("instantiate %s: %w", name, err)
		}
	}
	return nil
}

// newModuleConfig gives a guest what WASI must give it (wazero's defaults
// are fake): real clocks and sleep, crypto/rand randomness, and its stdout
// and stderr as plugin log lines. The host calls _initialize or _start
// itself, after instantiation.
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
