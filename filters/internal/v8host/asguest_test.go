package v8host_test

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/internal/v8host"
)

// asGuest is a guest of another SDK (AssemblyScript, @solo-io/proxy-runtime
// 0.1.8, ABI 0.2.0), built by gateway/wasmhost/testdata/asguest/build.sh;
// gateway/wasmhost's TestAssemblyScriptGuest checks its sha256 and runs the
// same cases in wazero.
const asGuest = "../../../gateway/wasmhost/testdata/asguest/asguest.wasm"

// TestAssemblyScriptGuest loads the AssemblyScript guest under V8 with
// Envoy's semantics, with and without a plugin configuration: with one it
// runs; without one it aborts in proxy_on_configure (proc_exit 255 after
// pure.ts:112, a double free of the buffer a previous hostcall returned,
// since cpp-host writes nothing for an empty read), exactly as in wazero.
func TestAssemblyScriptGuest(t *testing.T) {
	needNode(t)
	for _, tc := range []struct{ name, cfg, want string }{
		{"no configuration", "", ""},
		{"configuration", "hello", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runAllowFailure(t, v8host.Input{
				VMs:      []v8host.VM{{Name: "asguest", Wasm: asGuest, RootID: "asguest", PluginConfig: tc.cfg}},
				Requests: []v8host.Request{{RequestHeaders: [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "x"}}}},
			})
			if tc.want == "" {
				if err := out.Err(); err == nil || !strings.Contains(err.Error(), "proc_exit(255)") || !strings.Contains(out.LogText(), "pure.ts(112") {
					t.Fatalf("err = %v, want proc_exit(255) after the abort at pure.ts:112; logs:\n%s", err, out.LogText())
				}
				return
			}
			if err := out.Err(); err != nil {
				t.Fatalf("%v\nlogs:\n%s", err, out.LogText())
			}
			if got, _ := v8host.Header(out.Requests[0].RequestHeaders, "x-as-config"); got != tc.want {
				t.Errorf("x-as-config = %q, want %q", got, tc.want)
			}
		})
	}
}
