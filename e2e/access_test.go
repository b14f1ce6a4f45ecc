package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/gateway"
	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/pemcert"
	"github.com/meshwarden/meshwarden/internal/testenv/promseries"
)

// accessPolicy is the ledger service's AccessPolicy in the test's policy dir.
func accessPolicy(orders string, dryRun bool) string {
	dry := ""
	if dryRun {
		dry = "  dryRun: true\n"
	}
	return `apiVersion: meshwarden.io/v1alpha1
kind: AccessPolicy
metadata:
  name: ledger-callers
spec:
  service: ledger
` + dry + `  rules:
    - name: orders-read
      action: allow
      from: [` + orders + `]
      methods: [GET]
      paths: [/v1/ledger/**]
`
}

// TestAccessEnforcedOverMTLS runs the whole stack with mTLS and a Go
// gateway as the inbound sidecar of service "ledger" (it receives from the
// plane exactly what an Envoy sidecar would: the mTLS inbound listener with
// the RBAC filters). Callers present Consul Connect leaves: the listed
// SPIFFE id gets 200, an unlisted one 403 and an ACCESS_DENIED record in the
// audit log; after the policy switches to dry-run nothing is denied but the
// would-be denial is counted; Consul intentions then govern the service once
// its AccessPolicy is removed, and an intention change applies without a
// restart.
func TestAccessEnforcedOverMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e needs Consul and child processes; run without -short")
	}
	st := startStackOpts(t, demo.StackOptions{MTLS: true})
	policyDir := st.PolicyDir // the plane's copy of the examples, reloaded on change
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// SPIFFE ids in the stack's trust domain (the gateway's id names it).
	prefix := strings.TrimSuffix(st.GatewayID, "meshwarden-gateway")
	ordersID, intruderID := prefix+"orders", prefix+"intruder"
	writePolicy := func(dryRun bool) {
		t.Helper()
		tmp := filepath.Join(policyDir, ".access.tmp")
		if err := os.WriteFile(tmp, []byte(accessPolicy(ordersID, dryRun)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(policyDir, "access-ledger.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(false)

	appPort := startLedgerApp(t)
	gw, sideAddr, reg := startLedgerSidecar(ctx, t, st, appPort)

	orders, intruder := meshClient(t, st, "orders"), meshClient(t, st, "intruder")
	url := "https://" + sideAddr + "/v1/ledger/entries"
	call := func(c *http.Client) (int, string) { return httpget.Text(ctx, c, url) }
	eventually(t, 90*time.Second, "the ledger sidecar serving the access policy", func() (bool, string) {
		code, body := call(intruder)
		return gw.Ready() && code == http.StatusForbidden, body
	})

	t.Run("listed caller gets 200", func(t *testing.T) {
		if code, body := call(orders); code != http.StatusOK || body != "ledger-app /v1/ledger/entries" {
			t.Fatalf("orders: %d %q, want 200 from the app", code, body)
		}
	})
	t.Run("unlisted caller gets 403 and an audit record", func(t *testing.T) {
		code, body := call(intruder)
		if code != http.StatusForbidden || !strings.Contains(body, "access denied") {
			t.Fatalf("intruder: %d %q, want 403 access denied", code, body)
		}
		eventually(t, 30*time.Second, "the ACCESS_DENIED record", func() (bool, string) {
			out, err := exec.Command(testEnv.binary, "audit", "query", "--dir", st.AuditDir, "--op-type", "ACCESS_DENIED").CombinedOutput()
			if err != nil {
				return false, string(out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				var ev struct {
					Subject, Resource, Path string
					Status                  int
				}
				if json.Unmarshal([]byte(line), &ev) == nil && ev.Subject == intruderID && ev.Resource == "ledger#none" && ev.Status == 403 && ev.Path == "/v1/ledger/entries" {
					return true, line
				}
			}
			return false, string(out)
		})
		verifyAudit(t, st)
	})
	t.Run("dry-run denies nothing but counts", func(t *testing.T) {
		writePolicy(true)
		eventually(t, 60*time.Second, "the dry-run policy in force", func() (bool, string) {
			code, body := call(intruder)
			return code == http.StatusOK, body
		})
		if got := accessCount(t, reg, "would_deny"); got < 1 {
			t.Errorf("would_deny = %v, want the intruder's requests counted", got)
		}
		if code, _ := call(orders); code != http.StatusOK {
			t.Errorf("orders in dry-run: %d, want 200", code)
		}
	})
	t.Run("consul intention changes take effect without a restart", func(t *testing.T) {
		setIntention := func(sources ...*api.SourceIntention) {
			t.Helper()
			e := &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "ledger", Sources: sources}
			if _, _, err := st.ConsulAPI.ConfigEntries().Set(e, nil); err != nil {
				t.Fatal(err)
			}
		}
		allow := func(n string) *api.SourceIntention {
			return &api.SourceIntention{Name: n, Action: api.IntentionActionAllow}
		}
		denyAll := &api.SourceIntention{Name: "*", Action: api.IntentionActionDeny}
		// Only orders; the dry-run AccessPolicy still takes precedence.
		setIntention(allow("orders"), denyAll)
		if code, _ := call(intruder); code != http.StatusOK {
			t.Fatalf("intruder: %d while the AccessPolicy (dry-run) takes precedence, want 200", code)
		}
		if err := os.Remove(filepath.Join(policyDir, "access-ledger.yaml")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "the intentions enforced once the AccessPolicy is gone", func() (bool, string) {
			code, body := call(intruder)
			return code == http.StatusForbidden, body
		})
		if code, body := call(orders); code != http.StatusOK {
			t.Fatalf("orders under the intentions: %d %q, want 200", code, body)
		}
		setIntention(allow("orders"), allow("intruder"), denyAll)
		eventually(t, 60*time.Second, "the changed intention admitting intruder", func() (bool, string) {
			code, body := call(intruder)
			return code == http.StatusOK, body
		})
	})
}

// startLedgerApp starts the ledger app, plain HTTP on loopback behind its
// sidecar, and returns its port.
func startLedgerApp(t *testing.T) int {
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ledger-app "+r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = app.Serve(appLn) }()
	t.Cleanup(func() { _ = app.Close() })
	return appLn.Addr().(*net.TCPAddr).Port
}

// startLedgerSidecar runs the Go gateway in sidecar mode for service
// "ledger", with the ledger's own Consul token, and returns it, its
// listening address and its metrics registry.
func startLedgerSidecar(ctx context.Context, t *testing.T, st *demo.Stack, appPort int) (*gateway.Gateway, string, *prometheus.Registry) {
	sideLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ledgerToken, err := st.ServiceToken(ctx, "ledger")
	if err != nil {
		t.Fatal(err)
	}
	dial, err := auth.ClientOptions{CAFile: st.CAFile, Token: ledgerToken}.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(ctx, gateway.Config{XDSAddress: st.PlaneXDS, XDSDialOptions: dial, NodeID: "ledger-sidecar-1", Listener: sideLn,
		CacheDir: t.TempDir(), Registry: reg, Service: "ledger", LocalAppPort: appPort,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.Run(gctx) }()
	t.Cleanup(func() {
		gcancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("the sidecar did not stop within 15s")
		}
	})
	return gw, sideLn.Addr().String(), reg
}

// meshClient is an HTTPS client presenting service's Consul Connect leaf and
// trusting the active Connect root.
func meshClient(t *testing.T, st *demo.Stack, service string) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(activeConnectRoot(t, st.ConsulAPI))
	leaf := agentLeaf(t, st.ConsulAPI, service)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{*leaf.TLS()},
		// SPIFFE leaves carry no DNS name: verify the chain against
		// the Connect root, not a host name.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: pemcert.VerifyRaw(roots),
	}}}
}

// accessCount sums meshwarden_gateway_access_decisions_total for decision.
func accessCount(t *testing.T, reg *prometheus.Registry, decision string) float64 {
	t.Helper()
	return promseries.Sum(t, reg, "meshwarden_gateway_access_decisions_total", map[string]string{"decision": decision})
}
