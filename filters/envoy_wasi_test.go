package filters_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// TestModulesImportOnlyEnvoysWASI reads the import section of every built
// filter module (and the bundle) and fails if one imports a WASI function
// Envoy's host does not export: Envoy would refuse to load it. With
// MESHWARDEN_FILTERS_DIR (make test) it checks the modules make built;
// otherwise it builds them.
func TestModulesImportOnlyEnvoysWASI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every filter module")
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx) // only parses and compiles: no host modules needed
	defer rt.Close(ctx)
	allowed := wasmhost.EnvoyWASIFunctions()
	for _, name := range append(filters.Order(), "bundle") {
		t.Run(name, func(t *testing.T) {
			wasm := module(t, name)
			cm, err := rt.CompileModule(ctx, wasm)
			if err != nil {
				t.Fatal(err)
			}
			var wasi int
			for _, f := range cm.ImportedFunctions() {
				mod, fn, _ := f.Import()
				if mod != "wasi_snapshot_preview1" && mod != "wasi_unstable" {
					continue
				}
				wasi++
				if !slices.Contains(allowed, fn) {
					t.Errorf("%s.wasm imports %s.%s, which Envoy's host does not export (Envoy's set: %v)", name, mod, fn, allowed)
				}
			}
			if wasi == 0 {
				t.Errorf("%s.wasm imports no WASI function: not a Go wasip1 module?", name)
			}
		})
	}
}

// module returns the .wasm of filter name: from MESHWARDEN_FILTERS_DIR if
// make built it there, else built now.
func module(t *testing.T, name string) []byte {
	t.Helper()
	if dir := os.Getenv("MESHWARDEN_FILTERS_DIR"); dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, name+".wasm")); err == nil {
			return b
		}
	}
	return kittest.MustBuild(t, "./"+name+"/wasm")
}
