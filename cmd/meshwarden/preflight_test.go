package main

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/auditstore/collector"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

// serveLeaf serves TLS on loopback with the Connect leaf Consul issues for
// service (a stand-in for the plane's xDS port: preflight checks only the
// handshake and the certificate) and returns its address.
func serveLeaf(t *testing.T, c *api.Client, service string) string {
	t.Helper()
	cert := consultest.Leaf(t, c, service)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	return ln.Addr().String()
}

// serveHealthTLS serves GET /healthz over TLS with the Connect leaf of
// service, as a collector run with a Connect certificate does.
func serveHealthTLS(t *testing.T, c *api.Client, service string) string {
	t.Helper()
	cert := consultest.Leaf(t, c, service)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// startCollector runs a real audit collector on loopback.
func startCollector(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "audit.key")
	if err := wal.GenerateKey(key, key+".pub"); err != nil {
		t.Fatal(err)
	}
	p, err := collector.Start(context.Background(), collector.RunConfig{Dir: filepath.Join(dir, "wal"), KeyFile: key, Listen: "127.0.0.1:0", Tokens: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.Addr().String()
}

// TestPreflightOnRealConsul: with Consul (ACLs on), a plane certificate
// from its CA, a gateway token and a running collector every check passes;
// each missing or wrong part fails its own check, named in the exit error.
func TestPreflightOnRealConsul(t *testing.T) {
	agent, mgmt := consultest.LongWith(t, consulagent.Options{ManagementToken: consulagent.NewToken()})
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := func(name string, services ...string) string {
		secret, _, err := consulagent.CreateToken(ctx, mgmt, consulagent.TokenSpec{Description: name, Services: services})
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".token", secret)
	}
	root, _, err := consulagent.ActiveRoot(ctx, mgmt)
	if err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})))
	gwToken, payToken := token("gateway", meshnames.GatewayNodeCluster), token("payments", "payments")
	plane, notPlane := serveLeaf(t, mgmt, meshnames.PlaneServiceName), serveLeaf(t, mgmt, "payments")
	coll := startCollector(t)
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	base := []string{"preflight", "--consul", agent.Addr(), "--xds-ca-file", caFile, "--timeout", "20s"}

	out, _, err := runCLI(t, append(base, "--xds-address", plane, "--token-file", gwToken, "--audit-collector", coll)...)
	if err != nil || strings.Count(out, "OK  ") != 5 || !strings.Contains(out, "svc/"+meshnames.GatewayNodeCluster+" expires") {
		t.Fatalf("all present: %v\n%s", err, out)
	}
	deadCollector := startCollector(t)
	collTLS, otherTLS := serveHealthTLS(t, mgmt, meshnames.CollectorServiceName), serveHealthTLS(t, mgmt, "payments")
	// A collector with a Connect leaf (no host names) is verified with the
	// mesh CA and its SPIFFE id.
	if out, _, err := runCLI(t, append(base, "--xds-address", plane, "--token-file", gwToken, "--audit-collector", collTLS)...); err != nil || !strings.Contains(out, collTLS+"/healthz: healthy") {
		t.Fatalf("TLS collector with its Connect leaf: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		failed string
		want   string
	}{
		{"a token without service:write on the gateway", []string{"--xds-address", plane, "--token-file", payToken, "--skip", "audit"},
			"credential, certificate", "lacks service:write on \"" + meshnames.GatewayNodeCluster},
		{"no token", []string{"--xds-address", plane, "--skip", "audit"}, "credential, certificate", "no token: give --token-file"},
		{"another service's certificate on the xDS port", []string{"--xds-address", notPlane, "--token-file", gwToken, "--skip", "audit"},
			"plane", "is not the control plane's"},
		{"nothing on the xDS port", []string{"--xds-address", deadAddr(t), "--token-file", gwToken, "--skip", "audit"}, "plane", "connection refused"},
		{"a leaf shorter-lived than required", []string{"--xds-address", plane, "--token-file", gwToken, "--skip", "audit", "--min-cert-validity", "10000h"},
			"certificate", "less than --min-cert-validity"},
		{"no collector", []string{"--xds-address", plane, "--token-file", gwToken, "--audit-collector", deadAddr(t)}, "audit", "connection refused"},
		{"no collector registered in Consul", []string{"--xds-address", plane, "--token-file", gwToken, "--skip", "plane"}, "audit", "no healthy meshwarden-audit instance"},
		{"a TLS collector whose certificate is another service's", []string{"--xds-address", plane, "--token-file", gwToken, "--audit-collector", otherTLS},
			"audit", "x509"},
		{"Consul down", []string{"--consul", deadAddr(t), "--xds-address", plane, "--token-file", gwToken, "--audit-collector", deadCollector, "--skip", "credential,certificate"},
			"consul", "start the agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tc.args...)
			out, _, err := runCLI(t, args...)
			if exitcode.Of(err) != exitcode.Findings || !strings.HasSuffix(err.Error(), "failed: "+tc.failed) || !strings.Contains(out, tc.want) {
				t.Fatalf("meshwarden %s: %v (exit %d)\n%s\nwant exit 1 naming %q and %q", strings.Join(tc.args, " "), err, exitcode.Of(err), out, tc.failed, tc.want)
			}
		})
	}
	if _, _, err := runCLI(t, "preflight", "--skip", "vault"); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("--skip vault: %v, want a usage error", err)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
