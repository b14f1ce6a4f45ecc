package v8host_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/filters/internal/v8host"
)

// built holds the filter modules, built once per test binary (or taken from
// MESHWARDEN_FILTERS_DIR, where `make test` has just built them).
var built struct {
	once  sync.Once
	dir   string // temporary, removed by TestMain
	paths map[string]string
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// needNode skips the test when node is not on PATH (CI installs nodejs).
func needNode(t testing.TB) {
	t.Helper()
	if !v8host.Available() {
		t.Skip(v8host.ErrNoNode)
	}
}

// modules returns the .wasm path of every filter.
func modules(t testing.TB) map[string]string {
	t.Helper()
	needNode(t)
	built.once.Do(func() {
		built.paths = map[string]string{}
		if dir := os.Getenv("MESHWARDEN_FILTERS_DIR"); dir != "" {
			all := true
			for _, name := range filters.Order() {
				p := filepath.Join(dir, name+".wasm")
				if _, err := os.Stat(p); err != nil {
					all = false
					break
				}
				built.paths[name] = p
			}
			if all {
				return
			}
		}
		if built.dir, built.err = os.MkdirTemp("", "v8host-wasm-"); built.err != nil {
			return
		}
		for _, name := range filters.Order() {
			out := filepath.Join(built.dir, name+".wasm")
			cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "../../"+name+"/wasm")
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if msg, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("build %s.wasm: %v\n%s", name, err, msg)
				return
			}
			built.paths[name] = out
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.paths
}

// run runs a story and fails the test on a host error or a VM failure.
func run(t testing.TB, in v8host.Input) *v8host.Output {
	t.Helper()
	out := runAllowFailure(t, in)
	if err := out.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func runAllowFailure(t testing.TB, in v8host.Input) *v8host.Output {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := v8host.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// envoyWASI is the WASI surface Envoy exports (at proxy-wasm-cpp-host PR
// #533), under wasi_snapshot_preview1 and wasi_unstable.
var envoyWASI = map[string]bool{
	"fd_write": true, "fd_read": true, "fd_seek": true, "fd_close": true, "fd_fdstat_get": true,
	"fd_fdstat_set_flags": true, "fd_prestat_get": true, "fd_prestat_dir_name": true,
	"environ_get": true, "environ_sizes_get": true, "args_get": true, "args_sizes_get": true,
	"clock_time_get": true, "random_get": true, "sched_yield": true, "proc_exit": true, "poll_oneoff": true,
}

// TestStartEveryFilter starts each filter in its own VM with its README
// example: _initialize, proxy_on_context_create, proxy_on_vm_start and
// proxy_on_configure succeed, and only Envoy's WASI functions are called.
func TestStartEveryFilter(t *testing.T) {
	mods := modules(t)
	configs := map[string]string{
		"dye":   readFile(t, "../../dye/testdata/example-ingress.json"),
		"audit": readFile(t, "../../audit/testdata/example.json"),
		"trace": readFile(t, "../../trace/testdata/example.json"),
	}
	for _, name := range filters.Order() {
		t.Run(name, func(t *testing.T) {
			out := run(t, v8host.Input{VMs: []v8host.VM{{Name: name, Wasm: mods[name], PluginConfig: configs[name]}}})
			vm := out.VMs[0]
			if !vm.Started || !vm.Configured {
				t.Fatalf("started %v configured %v; logs:\n%s", vm.Started, vm.Configured, out.LogText())
			}
			for call := range out.WASI.Calls {
				if !envoyWASI[call] {
					t.Errorf("guest called WASI %s, which Envoy does not export", call)
				}
			}
			// os's start-up asks to make stdio non-blocking: Envoy says
			// ENOSYS, and the guest must live with it.
			t.Logf("WASI calls %v; ENOSYS %v; other errors %v", out.WASI.Calls, out.WASI.ENOSYS, out.WASI.Errors)
		})
	}
}

// TestMissingImportFailsLikeEnvoy loads a module importing a WASI function
// Envoy does not export: it must fail to load, as in Envoy.
func TestMissingImportFailsLikeEnvoy(t *testing.T) {
	needNode(t)
	// (module (import "wasi_snapshot_preview1" "path_open" (func))
	//   (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))
	wasm := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00}
	wasm = append(wasm, 0x02, 0x24, 0x01, 0x16)
	wasm = append(wasm, "wasi_snapshot_preview1"...)
	wasm = append(wasm, 0x09)
	wasm = append(wasm, "path_open"...)
	wasm = append(wasm, 0x00, 0x00)
	wasm = append(wasm, 0x03, 0x02, 0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01)
	wasm = append(wasm, 0x07, 0x24, 0x02, 0x17)
	wasm = append(wasm, "proxy_abi_version_0_2_1"...)
	wasm = append(wasm, 0x00, 0x01, 0x06)
	wasm = append(wasm, "memory"...)
	wasm = append(wasm, 0x02, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b)
	path := filepath.Join(t.TempDir(), "path_open.wasm")
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runAllowFailure(t, v8host.Input{VMs: []v8host.VM{{Name: "p", Wasm: path}}})
	if out.OK || !strings.Contains(out.Failure, "missing import: wasi_snapshot_preview1.path_open") {
		t.Fatalf("ok %v failure %q, want a missing-import failure", out.OK, out.Failure)
	}
}

// TestRefusesBadConfig: proxy_on_configure returns false for an invalid
// configuration, with a log line naming the field (as the wazero runs).
func TestRefusesBadConfig(t *testing.T) {
	mods := modules(t)
	tests := []struct{ name, config, field string }{
		{"dye", `{"rules":[{"lane":"Canary"}]}`, "rules[0].lane"},
		{"audit", `{"rules":[{"path":{"prefix":"/"},"opType":"X","level":"loud"}]}`, "rules[0].level"},
		{"trace", `{"sampling":{"ratio":2}}`, "sampling.ratio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := run(t, v8host.Input{VMs: []v8host.VM{{Name: tt.name, Wasm: mods[tt.name], PluginConfig: tt.config}}})
			if out.VMs[0].Configured {
				t.Fatal("configuration accepted")
			}
			if !strings.Contains(out.LogText(), tt.field) {
				t.Errorf("logs do not name %s:\n%s", tt.field, out.LogText())
			}
		})
	}
}

// TestEmptyConfiguration pins the cpp-host edge the filters meet at
// start-up: an empty plugin configuration is an empty buffer, which
// proxy_get_buffer_bytes answers with Ok without writing a pointer or size.
// The filters must read that as "no configuration" (defaults; audit refuses
// for want of rules), never as a read error or a trap.
func TestEmptyConfiguration(t *testing.T) {
	mods := modules(t)
	want := map[string]bool{"dye": true, "audit": false, "trace": true}
	for _, name := range filters.Order() {
		t.Run(name, func(t *testing.T) {
			out := run(t, v8host.Input{VMs: []v8host.VM{{Name: name, Wasm: mods[name]}}})
			if got := out.VMs[0].Configured; got != want[name] {
				t.Errorf("configured = %v, want %v; logs:\n%s", got, want[name], out.LogText())
			}
			if strings.Contains(out.LogText(), "cannot read the plugin configuration") {
				t.Errorf("the empty buffer was read as an error:\n%s", out.LogText())
			}
			if name == "audit" && !strings.Contains(out.LogText(), "rules: is empty") {
				t.Errorf("audit refused for another reason:\n%s", out.LogText())
			}
		})
	}
}
