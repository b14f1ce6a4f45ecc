package noop_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
)

// wantExports are the functions every module built on package proxywasm must
// export: the ABI marker, the allocator, the reactor entry point and every
// proxy_on_* callback of ABI 0.2.1 for HTTP (and TCP) filters.
var wantExports = []string{
	"_initialize",
	"proxy_abi_version_0_2_1",
	"proxy_on_memory_allocate",
	"proxy_on_context_create",
	"proxy_on_vm_start",
	"proxy_on_configure",
	"proxy_on_tick",
	"proxy_on_queue_ready",
	"proxy_on_done",
	"proxy_on_log",
	"proxy_on_delete",
	"proxy_on_request_headers",
	"proxy_on_request_body",
	"proxy_on_request_trailers",
	"proxy_on_response_headers",
	"proxy_on_response_body",
	"proxy_on_response_trailers",
	"proxy_on_http_call_response",
	"proxy_on_new_connection",
	"proxy_on_downstream_data",
	"proxy_on_downstream_connection_close",
	"proxy_on_upstream_data",
	"proxy_on_upstream_connection_close",
}

func TestModuleExports(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wasm modules")
	}
	for _, name := range []string{"noop", "headers"} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
			defer rt.Close(ctx)
			cm, err := rt.CompileModule(ctx, kittest.MustBuild(t, "../"+name+"/wasm"))
			if err != nil {
				t.Fatalf("compile %s: %v", name, err)
			}
			exports := cm.ExportedFunctions()
			for _, fn := range wantExports {
				if _, ok := exports[fn]; !ok {
					t.Errorf("%s.wasm does not export %s", name, fn)
				}
			}
			if _, ok := exports["_start"]; ok {
				t.Errorf("%s.wasm exports _start: it must be a reactor (-buildmode=c-shared)", name)
			}
			// Signatures the host relies on.
			sig := map[string][2]int{ // params, results
				"proxy_on_memory_allocate":    {1, 1},
				"proxy_on_context_create":     {2, 0},
				"proxy_on_vm_start":           {2, 1},
				"proxy_on_configure":          {2, 1},
				"proxy_on_request_headers":    {3, 1},
				"proxy_on_request_body":       {3, 1},
				"proxy_on_request_trailers":   {2, 1},
				"proxy_on_http_call_response": {5, 0},
				"proxy_on_done":               {1, 1},
				"proxy_on_queue_ready":        {2, 0},
			}
			for fn, want := range sig {
				d, ok := exports[fn]
				if !ok {
					continue
				}
				if got := [2]int{len(d.ParamTypes()), len(d.ResultTypes())}; got != want {
					t.Errorf("%s: %d params, %d results; want %d, %d", fn, got[0], got[1], want[0], want[1])
				}
			}
			imports := map[string]bool{}
			for _, d := range cm.ImportedFunctions() {
				mod, n, _ := d.Import()
				switch mod {
				case "env":
					if !strings.HasPrefix(n, "proxy_") {
						t.Errorf("%s.wasm imports env.%s: only proxy_* hostcalls belong in env", name, n)
					}
					imports[n] = true
				case "wasi_snapshot_preview1":
				default:
					t.Errorf("%s.wasm imports %s.%s from an unexpected module", name, mod, n)
				}
			}
			// Only the hostcalls a filter uses are linked in.
			if name == "headers" {
				for _, n := range []string{"proxy_replace_header_map_value", "proxy_remove_header_map_value", "proxy_add_header_map_value", "proxy_get_header_map_value"} {
					if !imports[n] {
						t.Errorf("headers.wasm does not import env.%s", n)
					}
				}
			}
		})
	}
}
