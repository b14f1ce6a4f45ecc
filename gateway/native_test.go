package gateway

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// officialDye builds the dye filter exactly as make filters does and
// returns it, skipping the test when this toolchain does not reproduce the
// recorded official build (filters.TestOfficialSHA256 owns that check).
func officialDye(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dye.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-o", out, "../filters/dye/wasm")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dye: %v\n%s", err, msg)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	o, err := filters.OfficialBuilds()
	if err != nil {
		t.Fatal(err)
	}
	if sum := modulefetch.Sum(wasm); sum != o.SHA256["dye"] {
		t.Skipf("this toolchain builds dye to %s, not the official %s (recorded with %s)", sum, o.SHA256["dye"], o.GoVersion)
	}
	return wasm
}

// TestOfficialFiltersRunNatively: the official build of a built-in filter
// runs natively, any other module in wazero, and /config_dump says which;
// WasmNativeOff (--wasm-native=off) runs the official build in wazero too.
func TestOfficialFiltersRunNatively(t *testing.T) {
	dye, noop := officialDye(t), testGuest(t, "noop")
	ms := startModuleServer(t)
	ms.put("/dye.wasm", dye)
	ms.put("/noop.wasm", noop)
	plane := startPlane(t)
	stable := startUpstream(t, "stable")
	for _, tc := range []struct {
		node    string
		off     bool
		dyeWant string
	}{
		{"gw-native", false, wasmhost.RuntimeNative},
		{"gw-native-off", true, wasmhost.RuntimeWasm},
	} {
		t.Run(tc.node, func(t *testing.T) {
			gw := startGateway(t, plane, tc.node, func(c *Config) { c.WasmNativeOff = tc.off })
			rc := routeConfig(&route.Route{Name: "all", Match: prefixMatch("/"), Action: routeTo("stable")})
			plane.set(tc.node, httpListener(t, gw.port(), "r", "dye", "mw-noop"), rc,
				wasmFilterExt(t, "dye", "dye", ms.URL+"/dye.wasm", modulefetch.Sum(dye), 0,
					`{"rules":[{"match":{"headers":[{"name":"x-user","exact":"u-1"}]},"lane":"canary"}]}`),
				wasmExt(t, "mw-noop", ms.URL+"/noop.wasm", modulefetch.Sum(noop), false),
				edsCluster("stable", nil), cla("stable", lbEndpoint(stable.addr(), 0)))
			eventually(t, 90*time.Second, "readiness", gw.g.Ready)
			if code, body, _ := get(t, &http.Client{}, gw.url+"/x", "x-user", "u-1"); code != 200 || body != "stable" {
				t.Fatalf("through the chain: %d %q", code, body)
			}
			if got := (*stable.last.Load()).Get("X-Mw-Dye"); got != "canary" {
				t.Errorf("upstream saw x-mw-dye=%q, want canary: the dye filter did not run", got)
			}
			want := map[string]string{"dye": tc.dyeWant, "mw-noop": wasmhost.RuntimeWasm}
			for _, f := range configDump(t, gw.admin).Filters {
				w, ok := want[f.Name]
				if !ok {
					continue
				}
				if f.State != "running" || f.Runtime != w {
					t.Errorf("filter %s: state %q runtime %q, want running with runtime %q", f.Name, f.State, f.Runtime, w)
				}
				delete(want, f.Name)
			}
			if len(want) != 0 {
				t.Errorf("filters missing from /config_dump: %v", want)
			}
		})
	}
}
