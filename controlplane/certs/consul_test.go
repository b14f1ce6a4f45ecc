package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/internal/testenv/promseries"
	"github.com/meshwarden/meshwarden/ir"
)

// startConsul runs a real dev agent for the life of t. The harness leaves
// the agent's gRPC-TLS port at its fixed default (8503), so agents started
// by other packages' tests at the same moment collide; the start is retried
// while that port is taken.
func startConsul(t *testing.T) *api.Client {
	t.Helper()
	_, c := consultest.Start(t)
	return c
}

// setCAConfig rewrites the Connect CA configuration of the built-in
// provider with the given fields changed. SkipValidate lets tests use
// leaf lifetimes below Consul's 1h minimum.
func setCAConfig(t *testing.T, c *api.Client, fields map[string]any) {
	t.Helper()
	if err := consulagent.SetCAConfig(context.Background(), c, fields); err != nil {
		t.Fatal(err)
	}
}

// activeRoot returns Consul's active root certificate and trust domain.
func activeRoot(t *testing.T, c *api.Client) (*x509.Certificate, string) {
	t.Helper()
	root, td, err := consulagent.ActiveRoot(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return root, td
}

func startConsulManager(t *testing.T, c *api.Client, opts Options) *Manager {
	t.Helper()
	opts.Issuer = NewConsulIssuer(c, ConsulOptions{WaitTime: 10 * time.Second})
	if opts.MinRefresh == 0 {
		opts.MinRefresh = 300 * time.Millisecond
	}
	opts.RetryInterval, opts.MaxRetryInterval = 100*time.Millisecond, time.Second
	return runManager(t, opts)
}

func TestConsulLeafHasSPIFFEIDAndBecomesSDSSecrets(t *testing.T) {
	c := startConsul(t)
	dir := filepath.Join(t.TempDir(), "certs")
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	m := startConsulManager(t, c, Options{Dir: dir, Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leaf, err := m.Wait(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	root, td := activeRoot(t, c)
	want := fmt.Sprintf("spiffe://%s/ns/default/dc/dc1/svc/web", td)
	if leaf.SPIFFEID != want {
		t.Fatalf("SPIFFE id = %q, want %q", leaf.SPIFFEID, want)
	}
	if len(leaf.Leaf.URIs) != 1 || leaf.Leaf.URIs[0].String() != want {
		t.Fatalf("leaf URI SANs = %v, want [%s]", leaf.Leaf.URIs, want)
	}
	only := x509.NewCertPool()
	only.AddCert(root)
	if err := leaf.Verify(only, time.Now()); err != nil {
		t.Fatalf("leaf does not chain to Consul's active root: %v", err)
	}

	secrets, err := m.Secrets(xdsnode.Info{ID: "web-1", Cluster: "web", Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]bool{}
	for _, s := range secrets {
		byName[s.GetName()] = true
		if err := s.ValidateAll(); err != nil {
			t.Fatalf("secret %s fails Envoy's validation: %v", s.GetName(), err)
		}
	}
	if !byName[meshnames.LeafSecretName("web")] || !byName[meshnames.RootsSecretName] || len(secrets) != 2 {
		t.Fatalf("secrets = %v, want %s and %s", byName, meshnames.LeafSecretName("web"), meshnames.RootsSecretName)
	}
	for _, s := range secrets {
		if tc := s.GetTlsCertificate(); tc != nil {
			if string(tc.GetCertificateChain().GetInlineBytes()) != string(leaf.ChainPEM) {
				t.Fatal("leaf secret chain differs from the issued chain")
			}
			if !strings.Contains(string(tc.GetPrivateKey().GetInlineBytes()), "PRIVATE KEY") {
				t.Fatal("leaf secret has no private key")
			}
		}
		if vc := s.GetValidationContext(); vc != nil {
			got, err := ParsePEMCertificates(vc.GetTrustedCa().GetInlineBytes())
			if err != nil || len(got) != 1 || !got[0].Equal(root) {
				t.Fatalf("roots secret = %d certs (err %v), want the active root", len(got), err)
			}
		}
	}

	// Files: 0600, key never in logs or in fmt output.
	for _, f := range []string{"web.pem", "web-key.pem", "roots.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode = %v, want 0600", f, st.Mode().Perm())
		}
	}
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", leaf, *leaf, *leaf, leaf.Key), logs.String()} {
		if strings.Contains(s, "PRIVATE KEY") {
			t.Fatalf("private key printed: %.200s", s)
		}
	}
	if v := metricSeries(t, reg, "meshwarden_cert_expiry_seconds"); v["leaf"] <= 0 || v["root"] <= 0 {
		t.Fatalf("expiry gauges = %v, want positive leaf and root", v)
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	// The policy's LeafTTL reaches Consul's CA configuration.
	iss := NewConsulIssuer(c, ConsulOptions{})
	if err := iss.SetLeafTTL(ctx, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := time.ParseDuration(fmt.Sprint(got.Config["LeafCertTTL"])); err != nil || d != 2*time.Hour {
		t.Fatalf("LeafCertTTL = %v, want 2h", got.Config["LeafCertTTL"])
	}
	if err := iss.SetLeafTTL(ctx, time.Minute); err == nil || !strings.Contains(err.Error(), "1h to 8760h") {
		t.Fatalf("SetLeafTTL(1m) = %v, want a range error", err)
	}
	if newRoot, _ := activeRoot(t, c); !newRoot.Equal(root) {
		t.Fatal("changing LeafCertTTL rotated the root")
	}
}

// metricSeries returns name's values keyed by their "kind" label.
func metricSeries(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range promseries.Family(t, reg, name).GetMetric() {
		if kind, ok := promseries.Label(m, "kind"); ok {
			out[kind] = m.GetGauge().GetValue()
		}
	}
	return out
}

// loadResult counts a load run.
type loadResult struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
}

func (r *loadResult) fail(err error) {
	r.failed.Add(1)
	r.mu.Lock()
	if len(r.errs) < 5 {
		r.errs = append(r.errs, err.Error())
	}
	r.mu.Unlock()
}

// runLoad sends requests from workers until stop closes; half the workers
// reuse connections (they must survive the rotation), half handshake on
// every request (they must see the new certificates).
func runLoad(url string, clients []*http.Client, workers int, stop <-chan struct{}, res *loadResult) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func(cl *http.Client) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res.sent.Add(1)
				resp, err := cl.Get(url)
				if err != nil {
					res.fail(err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					res.fail(fmt.Errorf("status %d", resp.StatusCode))
				}
			}
		}(clients[i%len(clients)])
	}
	return &wg
}

// servedLeaf handshakes with addr and returns the certificate it serves.
func servedLeaf(t *testing.T, m *Manager, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, m.ClientTLSConfig("gateway", nil))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// mtlsUpstream serves "ok" over mTLS with web's live certificate, admitting
// only the gateway's SPIFFE id, and returns its address and two gateway
// clients: one reusing connections, one handshaking on every request.
func mtlsUpstream(t *testing.T, m *Manager, web, gw *Certificate) (string, []*http.Client) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.ServerTLSConfig("web", AllowSPIFFE(gw.SPIFFEID)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	clientCfg := m.ClientTLSConfig("gateway", AllowSPIFFE(web.SPIFFEID))
	clients := []*http.Client{
		{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientCfg, MaxIdleConnsPerHost: 4}},
		{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientCfg, DisableKeepAlives: true}},
	}
	for _, cl := range clients {
		t.Cleanup(cl.CloseIdleConnections)
	}
	return ln.Addr().String(), clients
}

// holdsRoots reports whether roots hold oldRoot and newRoot.
func holdsRoots(roots []*x509.Certificate, oldRoot, newRoot *x509.Certificate) (hasOld, hasNew bool) {
	for _, r := range roots {
		hasOld = hasOld || r.Equal(oldRoot)
		hasNew = hasNew || r.Equal(newRoot)
	}
	return hasOld, hasNew
}

// checkSDSRoots fails t unless the trust bundle web's sidecar gets over SDS
// holds both the old and the new root.
func checkSDSRoots(t *testing.T, m *Manager, oldRoot, newRoot *x509.Certificate) {
	t.Helper()
	secrets, err := m.Secrets(xdsnode.Info{ID: "web-1", Cluster: "web", Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var inBundle []*x509.Certificate
	for _, s := range secrets {
		if vc := s.GetValidationContext(); vc != nil {
			if inBundle, err = ParsePEMCertificates(vc.GetTrustedCa().GetInlineBytes()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if hasOld, hasNew := holdsRoots(inBundle, oldRoot, newRoot); !hasOld || !hasNew {
		t.Fatalf("SDS %s holds %d roots (old %v, new %v), want the old and the new", meshnames.RootsSecretName, len(inBundle), hasOld, hasNew)
	}
}

func TestConsulLeafRenewalAndRootRotationUnderLoadZeroFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Consul agent and a load loop")
	}
	c := startConsul(t)
	// A 2m leaf TTL (valid for 1m from issue: Consul backdates by 1m) makes the
	// agent re-sign on every blocking query: the manager renews about
	// every MinRefresh.
	setCAConfig(t, c, map[string]any{"LeafCertTTL": "2m"})
	m := startConsulManager(t, c, Options{MinRefresh: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	web, gw := waitLeaves(ctx, t, m)
	if web.Lifetime() > 5*time.Minute {
		t.Fatalf("leaf lifetime %s: the short LeafCertTTL did not apply", web.Lifetime())
	}
	oldRoot, _ := activeRoot(t, c)

	addr, clients := mtlsUpstream(t, m, web, gw)
	url := "https://" + addr + "/"

	stop := make(chan struct{})
	var res loadResult
	wg := runLoad(url, clients, 4, stop, &res)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()

	// Leaf renewal under load: both leaves replaced at least twice.
	oldSerials := map[string]bool{web.Serial(): true, gw.Serial(): true}
	renewals := 0
	waitFor(t, 30*time.Second, "two leaf renewals of web", func() bool {
		if s := m.Certificate("web").Serial(); !oldSerials[s] {
			oldSerials[s] = true
			renewals++
		}
		oldSerials[m.Certificate("gateway").Serial()] = true
		return renewals >= 2
	})
	if s := servedLeaf(t, m, addr); s.Equal(web.Leaf) {
		t.Fatal("the server still serves the first leaf after its renewal")
	}
	sentAtRenewal := res.sent.Load()

	// Root rotation under load: a new CA key.
	if err := consulagent.RotateRoot(context.Background(), c, "2m"); err != nil {
		t.Fatal(err)
	}
	newRoot, _ := activeRoot(t, c)
	if newRoot.Equal(oldRoot) {
		t.Fatal("CA config update did not rotate the root")
	}
	onlyNew := x509.NewCertPool()
	onlyNew.AddCert(newRoot)
	sawBoth := false
	waitFor(t, 60*time.Second, "both leaves re-issued under the new root", func() bool {
		hasOld, hasNew := holdsRoots(m.Roots(), oldRoot, newRoot)
		sawBoth = sawBoth || (hasOld && hasNew)
		for _, n := range []string{"web", "gateway"} {
			if m.Certificate(n).Verify(onlyNew, time.Now()) != nil {
				return false
			}
		}
		return true
	})
	// The SDS validation_context carries both roots during the rotation.
	checkSDSRoots(t, m, oldRoot, newRoot)
	oldOnly := x509.NewCertPool()
	oldOnly.AddCert(oldRoot)
	t.Logf("after the rotation: web's chain has %d intermediates; verifies against the old root alone: %v",
		len(m.Certificate("web").Intermediates), m.Certificate("web").Verify(oldOnly, time.Now()) == nil)
	if !sawBoth {
		t.Fatalf("the trust bundle never held the old and the new root together during the rotation (now %d roots)", len(m.Roots()))
	}
	// Keep the load on a little after the switch, then stop it.
	target := res.sent.Load() + 200
	waitFor(t, 30*time.Second, "200 more requests after the rotation", func() bool { return res.sent.Load() >= target })
	stopLoad()

	sent, failed := res.sent.Load(), res.failed.Load()
	t.Logf("load: %d requests sent (%d before the root rotation), %d failed; %d leaf serials seen before the rotation", sent, sentAtRenewal, failed, len(oldSerials))
	if sent < 400 {
		t.Fatalf("only %d requests sent: the load loop did not run", sent)
	}
	if failed != 0 {
		t.Fatalf("%d of %d requests failed through the rotations; first errors: %v", failed, sent, res.errs)
	}
	// Old certificates are no longer served.
	served := servedLeaf(t, m, addr)
	if oldSerials[fmt.Sprintf("%x", served.SerialNumber.Bytes())] {
		t.Fatal("the server still serves a certificate from before the root rotation")
	}
	chain := &Certificate{Leaf: served}
	if err := chain.Verify(onlyNew, time.Now()); err != nil {
		// Consul's chain may carry an intermediate; verify the live one.
		if err := m.Certificate("web").Verify(onlyNew, time.Now()); err != nil || !m.Certificate("web").Leaf.Equal(served) {
			t.Fatalf("served leaf does not chain to the new root: %v", errors.Join(err))
		}
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready after the rotations: %v", err)
	}
}

func TestConsulOutageKeepsLeafAndRaisesAlarm(t *testing.T) {
	agent, c := consultest.Start(t)
	setCAConfig(t, c, map[string]any{"LeafCertTTL": "2m"})
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	// Leaves live 2m (1m left at issue); renewing 59s early puts the leaf
	// in its renewal window from the start.
	m := startConsulManager(t, c, Options{Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Policy: ir.CertPolicy{RenewBefore: 59 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := m.Wait(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready before the outage: %v", err)
	}
	agent.Stop()
	waitFor(t, 20*time.Second, "the alarm after the agent stopped", func() bool { return m.Ready() != nil })
	cur := m.Certificate("web")
	if cur == nil || time.Now().After(cur.NotAfter()) {
		t.Fatal("no valid certificate kept during the outage")
	}
	if v := metricValue(t, reg, "meshwarden_cert_alarm"); v != 1 {
		t.Fatalf("alarm gauge = %v, want 1", v)
	}
	waitFor(t, 5*time.Second, "the loud alarm log line", func() bool { return strings.Contains(logs.String(), "CERTIFICATE ALARM") })
	t.Logf("kept serial %s (first %s) during the outage; Ready: %v", cur.Serial(), first.Serial(), m.Ready())
}
