package filters_test

import (
	"context"
	"errors"
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

// netpollPackages are the packages no guest may link. A wasip1 program's
// first timer arms the Go runtime's netpoll, and from then on its scheduler
// calls poll_oneoff (clock subscription) whenever it idles, as in GC: the
// call Envoy's hosts before proxy-wasm-cpp-host PR #533 answer ENOSYS,
// killing the VM (golang/go#78513, issue 19). crypto/internal/sysrand, which
// every crypto/* package links, starts such a timer on its first read;
// os, fmt and internal/poll bring the poller in with it. The guests use
// internal/guestfmt, guestjson, guestcrypto and guesturl instead
// (filters/README.md).
var netpollPackages = []string{"os", "fmt", "internal/poll", "crypto/internal/sysrand", "syscall/js"}

// guestPackages are the main packages of every guest module: the filters,
// the bundle and the test guests.
func guestPackages() []string {
	pkgs := []string{"./bundle/wasm", "./internal/testguests/noop/wasm", "./internal/testguests/headers/wasm"}
	for _, name := range filters.Order() {
		pkgs = append(pkgs, "./"+name+"/wasm")
	}
	return pkgs
}

// linked returns, for each package of netpollPackages that pkg links when
// built for wasip1, the chain of imports that brings it in.
func linked(t *testing.T, pkg string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	importer := map[string]string{} // package -> one package importing it
	var root string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		root = f[0] // -deps lists the package itself last
		for _, imp := range f[1:] {
			if _, ok := importer[imp]; !ok {
				importer[imp] = f[0]
			}
		}
	}
	found := map[string][]string{}
	for _, bad := range netpollPackages {
		if _, ok := importer[bad]; !ok {
			continue
		}
		chain := []string{bad}
		for p := bad; p != root && len(chain) < 64; {
			p = importer[p]
			chain = append([]string{p}, chain...)
		}
		found[bad] = chain
	}
	return found
}

// TestGuestsLinkNoOS fails if a guest module links os, fmt, internal/poll
// or crypto/internal/sysrand, naming the chain of imports that brings it
// in. testguests/cryptorand, the control guest seeded from crypto/rand as
// the filters were, must be caught.
func TestGuestsLinkNoOS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, pkg := range guestPackages() {
		for bad, chain := range linked(t, pkg) {
			t.Errorf("%s links %s, which arms the runtime's netpoll in Envoy (golang/go#78513): %s; use internal/guestfmt, guestjson, guestcrypto or guesturl (filters/README.md)",
				pkg, bad, strings.Join(chain, " -> "))
		}
	}
	if got := linked(t, "./internal/testguests/cryptorand/wasm"); got["crypto/internal/sysrand"] == nil || got["os"] == nil {
		t.Errorf("the control guest testguests/cryptorand is not caught (found %v): the check sees nothing", got)
	}
}

// netpollSymbols are function-name prefixes that, in a built module's name
// section, show a package of netpollPackages or a timer (time.AfterFunc,
// time.NewTimer, time.Sleep, … all reach time.newTimer) linked into it.
var netpollSymbols = []string{"os.", "fmt.", "internal/poll.", "crypto/internal/sysrand.", "time.newTimer", "time.Sleep"}

// TestModulesLinkNoOSNorTimers reads the function names of every built
// module (the wasm name section the Go linker writes) and fails on any of
// netpollSymbols, so the check holds for the binaries Envoy loads, not only
// for go list. The control guest's module must be caught.
func TestModulesLinkNoOSNorTimers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every filter module")
	}
	check := func(name string, wasm []byte) []string {
		names, err := wasmFuncNames(wasm)
		if err != nil {
			t.Fatalf("%s.wasm: %v", name, err)
		}
		if len(names) == 0 {
			t.Fatalf("%s.wasm has no function names: built with -ldflags=-s? the check needs the name section", name)
		}
		var bad []string
		for _, n := range names {
			for _, p := range netpollSymbols {
				if strings.HasPrefix(n, p) {
					bad = append(bad, n)
					break
				}
			}
		}
		return bad
	}
	for _, name := range append(filters.Order(), "bundle") {
		if bad := check(name, module(t, name)); len(bad) > 0 {
			t.Errorf("%s.wasm links %d functions that arm the runtime's netpoll in Envoy (golang/go#78513), e.g. %v", name, len(bad), bad[:min(5, len(bad))])
		}
	}
	for _, g := range []string{"noop", "headers"} {
		if bad := check(g, kittest.MustBuild(t, "./internal/testguests/"+g+"/wasm")); len(bad) > 0 {
			t.Errorf("testguests/%s links %v", g, bad[:min(5, len(bad))])
		}
	}
	if bad := check("cryptorand", kittest.MustBuild(t, "./internal/testguests/cryptorand/wasm")); len(bad) == 0 {
		t.Errorf("the control guest testguests/cryptorand is not caught: the check sees nothing")
	}
}

// wasmFuncNames returns the function names of a module's "name" custom
// section (subsection 1), as the WebAssembly spec's appendix defines it.
func wasmFuncNames(b []byte) ([]string, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a wasm module")
	}
	r := wasmReader{b: b[8:]}
	for len(r.b) > 0 {
		id := r.byte()
		sec := wasmReader{b: r.bytes(int(r.u32()))}
		if r.err != nil {
			return nil, r.err
		}
		if id != 0 || string(sec.bytes(int(sec.u32()))) != "name" {
			continue
		}
		for len(sec.b) > 0 && sec.err == nil {
			sub := sec.byte()
			body := wasmReader{b: sec.bytes(int(sec.u32()))}
			if sub != 1 {
				continue
			}
			n := body.u32()
			names := make([]string, 0, n)
			for i := uint32(0); i < n && body.err == nil; i++ {
				body.u32() // function index
				names = append(names, string(body.bytes(int(body.u32()))))
			}
			return names, body.err
		}
		return nil, sec.err
	}
	return nil, nil
}

type wasmReader struct {
	b   []byte
	err error
}

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.err = errors.New("truncated module")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wasmReader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("bad LEB128")
	return 0
}

func (r *wasmReader) bytes(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.err = errors.New("truncated module")
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
