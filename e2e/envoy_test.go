package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/testenv/proc"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
)

// MinEnvoyVersion is the oldest Envoy whose proxy-wasm-cpp-host runs
// standard-Go wasip1 filters (poll_oneoff must succeed: proxy-wasm-cpp-host
// PR #533, April 2026). Older Envoys load the modules but fail at the first
// clock or sleep hostcall.
//
// The exact Envoy release number could not be checked from this machine (no
// Envoy binary, no network): it is the first release whose bundled
// proxy-wasm-cpp-host includes PR #533 (merged April 2026), i.e. Envoy
// releases cut after its dependency bump (mid-2026 onwards).
const MinEnvoyVersion = "the first Envoy release bundling proxy-wasm-cpp-host with PR #533 (April 2026)"

// TestEnvoySidecar runs the demo's lane scenario through a real Envoy
// sidecar that joins the plane with envoy.yaml. It runs wherever an envoy
// binary is on PATH; this machine has none, and the test says so.
func TestEnvoySidecar(t *testing.T) {
	envoy, err := exec.LookPath("envoy")
	if err != nil {
		t.Skipf("SKIPPED: no envoy binary on PATH, so the Envoy scenario did not run here. Envoy compatibility is otherwise shown by ValidateAll on every resource and envoy.yaml (controlplane tests) and by the wasm host following Envoy's ABI behaviour. Install Envoy >= %s and re-run.", MinEnvoyVersion)
	}
	st := startStack(t, false)
	root := repoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, xdsPort, _ := net.SplitHostPort(st.PlaneXDS)
	adminAddr, _ := proc.FreeAddr()
	_, adminPort, _ := net.SplitHostPort(adminAddr)
	outAddr, _ := proc.FreeAddr()
	_, outPort, _ := net.SplitHostPort(outAddr)
	inAddr, _ := proc.FreeAddr()
	_, inPort, _ := net.SplitHostPort(inAddr)
	boot := string(raw)
	token, err := st.ServiceToken(ctx0(t), "web")
	if err != nil {
		t.Fatal(err)
	}
	boot = strings.Replace(boot, "REPLACE_WITH_THE_SIDECAR_TOKEN", token, 1)
	boot = strings.Replace(boot, "/etc/meshwarden/connect-ca.pem", st.CAFile, 1)
	boot = strings.Replace(boot, "port_value: 18000", "port_value: "+xdsPort, 1)
	boot = strings.Replace(boot, "port_value: 19000", "port_value: "+adminPort, 1)
	boot = strings.Replace(boot, `outbound_port: "15001"`, `outbound_port: "`+outPort+`"`, 1)
	boot = strings.Replace(boot, `inbound_port: "21000"`, `inbound_port: "`+inPort+`"`, 1)
	bootPath := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(bootPath, []byte(boot), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start("envoy", nil, envoy, "-c", bootPath, "--base-id", inPort)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.WaitHTTP(ctx, "http://"+adminAddr+"/ready"); err != nil {
		t.Fatal(err)
	}
	c := &demo.Client{GatewayAddr: outAddr, Host: "payments", HTTP: &http.Client{Timeout: 10 * time.Second}}
	awaitLane(ctx, t, c, "v2", "Envoy routes the canary lane to v2")
	sp := c.Run(ctx, 20, "/hello", func(int) map[string]string { return map[string]string{"x-canary": "true"} }, nil)
	if sp.ByVersion["v2"] != 20 {
		t.Fatalf("through Envoy, opt-in canary: %+v", sp)
	}
}

func ctx0(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
