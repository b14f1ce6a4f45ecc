package filters_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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

// osImporters are the packages in the guests' dependency graph (wasip1)
// that import os, fmt, internal/poll or syscall/js today. Go's wasip1
// netpoll comes with os (golang/go#78513, filters/README.md); the list may
// only shrink: a package that stops importing them must leave it, and a
// new one fails the test.
var osImporters = map[string]bool{
	"fmt":                     true, // os
	"os":                      true, // internal/poll
	"crypto/internal/sysrand": true, // os: crypto/rand, crypto/sha256 (drbg)
	"encoding/hex":            true,
	"encoding/json":           true,
	"math/big":                true, // crypto/rand
	"net/url":                 true, // audit compliance
	"github.com/meshwarden/meshwarden/filters/audit/auditconfig":      true,
	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig":          true,
	"github.com/meshwarden/meshwarden/filters/kit/kitconfig":          true,
	"github.com/meshwarden/meshwarden/filters/proxywasm":              true,
	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi": true,
	"github.com/meshwarden/meshwarden/internal/auditevent":            true,
	"github.com/meshwarden/meshwarden/internal/dyeing":                true,
}

// TestGuestOSImportersOnlyShrink lists, with go list -deps for wasip1, the
// packages of every guest main package that import os, fmt, internal/poll
// or syscall/js, and compares them with osImporters.
func TestGuestOSImportersOnlyShrink(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	pkgs := []string{"./bundle/wasm"}
	for _, name := range filters.Order() {
		pkgs = append(pkgs, "./"+name+"/wasm")
	}
	cmd := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	bad := map[string]bool{"os": true, "fmt": true, "internal/poll": true, "syscall/js": true}
	got := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if bad[imp] {
				got[f[0]] = true
			}
		}
	}
	for p := range got {
		if !osImporters[p] {
			t.Errorf("%s now brings os/fmt/internal/poll into a guest: use strconv/errors instead (filters/README.md)", p)
		}
	}
	for p := range osImporters {
		if !got[p] {
			t.Errorf("%s no longer brings os/fmt/internal/poll into the guests: remove it from osImporters", p)
		}
	}
}
