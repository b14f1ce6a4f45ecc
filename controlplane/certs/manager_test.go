package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/meshwarden/meshwarden/ir"
)

// writeCA writes a fresh self-signed CA into dir and returns its paths and
// certificate.
func writeCA(t testing.TB, dir, cn string) (string, string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	cf, kf := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return cf, kf, c
}

// testCA is a FileCA on a fresh CA written into a temporary dir, trust
// domain mesh.test.
type testCA struct {
	*FileCA
	certFile, keyFile string
	root              *x509.Certificate
}

// newTestCA writes a CA named cn and opens it as a FileCA issuing leaves
// for leafTTL (0: the default).
func newTestCA(t testing.TB, cn string, leafTTL time.Duration) *testCA {
	t.Helper()
	cf, kf, root := writeCA(t, t.TempDir(), cn)
	fca, err := NewFileCA(FileCAOptions{CertFile: cf, KeyFile: kf, TrustDomain: "mesh.test", LeafTTL: leafTTL})
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{FileCA: fca, certFile: cf, keyFile: kf, root: root}
}

// rotate writes a new CA named cn over the CA's files, reloads it and
// returns the new root.
func (c *testCA) rotate(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	cf, kf, root := writeCA(t, t.TempDir(), cn)
	if err := os.Rename(cf, c.certFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(kf, c.keyFile); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	return root
}

// waitLeaves waits for the leaves of "web" and "gateway", the two ends of
// the rotation tests' mTLS load.
func waitLeaves(ctx context.Context, t *testing.T, m *Manager) (web, gw *Certificate) {
	t.Helper()
	var err error
	if web, err = m.Wait(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if gw, err = m.Wait(ctx, "gateway"); err != nil {
		t.Fatal(err)
	}
	return web, gw
}

// runManager runs a Manager with opts until tb ends.
func runManager(tb testing.TB, opts Options) *Manager {
	tb.Helper()
	m, err := NewManager(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	tb.Cleanup(func() { stop(); <-done })
	return m
}

func TestFileCAIssueRenewAndRootRotation(t *testing.T) {
	fca := newTestCA(t, "ca-one", 3*time.Second)
	ca1 := fca.root
	m := runManager(t, Options{Issuer: fca, RootsPoll: 50 * time.Millisecond, MinRefresh: 10 * time.Millisecond,
		RetryInterval: 20 * time.Millisecond, Policy: ir.CertPolicy{RenewBefore: 2 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := m.Wait(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	if first.SPIFFEID != "spiffe://mesh.test/ns/default/dc/dc1/svc/api" {
		t.Fatalf("SPIFFE id = %q", first.SPIFFEID)
	}
	if at := m.RenewAt(first); at.Sub(first.NotAfter()) != -2*time.Second {
		t.Fatalf("renewal at %s before expiry, want 2s (RenewBefore)", first.NotAfter().Sub(at))
	}
	waitFor(t, 10*time.Second, "a file-CA renewal", func() bool { return m.Certificate("api").Serial() != first.Serial() })

	// Rotate: new CA files, Reload. The bundle holds both roots.
	ca2 := fca.rotate(t, "ca-two")
	waitFor(t, 10*time.Second, "a leaf under the new root", func() bool {
		p := x509.NewCertPool()
		p.AddCert(ca2)
		return m.Certificate("api").Verify(p, time.Now()) == nil
	})
	roots := m.Roots()
	if len(roots) != 2 || !roots[0].Equal(ca1) || !roots[1].Equal(ca2) {
		t.Fatalf("bundle = %d roots, want [ca-one ca-two] during the grace period", len(roots))
	}
}

func TestRootGraceDropsOldRoot(t *testing.T) {
	dir := t.TempDir()
	_, _, ca1 := writeCA(t, dir, "one")
	_, _, ca2 := writeCA(t, t.TempDir(), "two")
	m, err := NewManager(Options{Issuer: &FileCA{}, RootGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m.setRoots([]*x509.Certificate{ca1})
	m.setRoots([]*x509.Certificate{ca2})
	if n := len(m.Roots()); n != 2 {
		t.Fatalf("right after the rotation the bundle has %d roots, want 2", n)
	}
	time.Sleep(60 * time.Millisecond) // the grace period itself is under test
	m.setRoots([]*x509.Certificate{ca2})
	if r := m.Roots(); len(r) != 1 || !r[0].Equal(ca2) {
		t.Fatalf("after the grace period the bundle has %d roots, want only the new one", len(r))
	}
}

func TestAlarm(t *testing.T) {
	fca := newTestCA(t, "ca", 90*time.Minute)
	c, err := fca.Issue(context.Background(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	// Life is 91m (1m backdating): renewBefore defaults to ~30m20s.
	na := c.NotAfter()
	m, err := NewManager(Options{Issuer: fca, AlarmAfterFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		now      time.Time
		failures int
		cert     *Certificate
		want     string
	}{
		{"fresh", na.Add(-80 * time.Minute), 0, c, ""},
		{"failing but far from expiry", na.Add(-80 * time.Minute), 10, c, ""},
		{"in window, two failures", na.Add(-20 * time.Minute), 2, c, ""},
		{"in window, three failures", na.Add(-20 * time.Minute), 3, c, "renewals in a row failed"},
		{"near expiry without failures", na.Add(-5 * time.Minute), 0, c, "has not been renewed"},
		{"expired", na.Add(time.Second), 0, c, "expired"},
		{"never issued", time.Now(), 3, nil, "no certificate yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &entry{name: "svc", cert: tc.cert, failures: tc.failures, lastErr: errors.New("ca down")}
			got := m.alarmLocked(e, tc.now)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("alarm = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	fca := newTestCA(t, "ca", 0)
	c, err := fca.Issue(context.Background(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(c)
	for _, tc := range []struct{ name, out string }{
		{"%v", fmt.Sprintf("%v", c)},
		{"%+v", fmt.Sprintf("%+v", *c)},
		{"%#v", fmt.Sprintf("%#v", *c)},
		{"%s key", fmt.Sprintf("%s", c.Key)},
		{"%x key", fmt.Sprintf("%x", c.Key)},
		{"json", string(js)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.out, "PRIVATE KEY") || strings.Contains(tc.out, "2d2d2d2d2d") {
				t.Fatalf("key leaked: %.120s", tc.out)
			}
		})
	}
	if !strings.Contains(string(c.Key), "PRIVATE KEY") {
		t.Fatal("the key bytes themselves are missing")
	}
}

func TestSecretsValidateAndLiveSwap(t *testing.T) {
	fca := newTestCA(t, "ca", 0)
	m := runManager(t, Options{Issuer: fca})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.Wait(ctx, meshnames.GatewayNodeCluster); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Changed():
	case <-ctx.Done():
		t.Fatal("Changed did not fire after issuance")
	}
	secrets, err := m.Secrets(xdsnode.Info{ID: "gw-1", Cluster: meshnames.GatewayNodeCluster, Gateway: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 2 || secrets[0].GetName() != meshnames.LeafSecretName(meshnames.GatewayNodeCluster) || secrets[1].GetName() != meshnames.RootsSecretName {
		t.Fatalf("secrets = %v", secrets)
	}
	for _, s := range secrets {
		if err := s.ValidateAll(); err != nil {
			t.Fatalf("secret %s: %v", s.GetName(), err)
		}
	}
	get := m.GetCertificate(meshnames.GatewayNodeCluster)
	before, _ := get(&tls.ClientHelloInfo{})
	// A manual re-issue (as a renewal would) is served at the next handshake.
	c, err := fca.Issue(ctx, meshnames.GatewayNodeCluster)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.RLock()
	e := m.leaves[meshnames.GatewayNodeCluster]
	m.mu.RUnlock()
	if err := m.install(ctx, e, c); err != nil {
		t.Fatal(err)
	}
	after, _ := get(&tls.ClientHelloInfo{})
	if before.Leaf.Equal(after.Leaf) || !after.Leaf.Equal(c.Leaf) {
		t.Fatal("GetCertificate did not switch to the new certificate")
	}
}

func TestInstallRejectsLeafOutsideBundle(t *testing.T) {
	mine := newTestCA(t, "mine", 0)
	stranger := newTestCA(t, "stranger", 0)
	m := runManager(t, Options{Issuer: mine})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good, err := m.Wait(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := stranger.Issue(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	m.mu.RLock()
	e := m.leaves["svc"]
	m.mu.RUnlock()
	if err := m.install(ctx, e, bad); err == nil || !strings.Contains(err.Error(), "does not chain to the trust bundle") {
		t.Fatalf("install of a foreign leaf: err = %v, want a refusal", err)
	}
	if m.Certificate("svc").Serial() != good.Serial() {
		t.Fatal("the foreign leaf replaced the good one")
	}
}

// TestFileCARootRotationUnderLoadZeroFailures rotates a CA that does not
// cross-sign (the new leaves do not chain to the old root) while mTLS load
// runs. Roots are polled only hourly, so zero failures rests on the
// manager refreshing the bundle before it serves a leaf of an unknown root.
//
// Leaves live 10s (plus 1m of backdating) and are renewed 0.5s after
// issue, so they turn over many times while expiry stays far enough away
// for a loaded CI machine.
func TestFileCARootRotationUnderLoadZeroFailures(t *testing.T) {
	fca := newTestCA(t, "ca-one", 10*time.Second)
	ca1 := fca.root
	m := runManager(t, Options{Issuer: fca, RootsPoll: time.Hour, MinRefresh: 10 * time.Millisecond,
		RetryInterval: 20 * time.Millisecond, Policy: ir.CertPolicy{RenewBefore: 69500 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	web, gw := waitLeaves(ctx, t, m)
	addr, clients := mtlsUpstream(t, m, web, gw)
	stop := make(chan struct{})
	var res loadResult
	wg := runLoad("https://"+addr+"/", clients, 4, stop, &res)

	waitFor(t, 10*time.Second, "a renewal under load", func() bool { return m.Certificate("web").Serial() != web.Serial() })
	ca2 := fca.rotate(t, "ca-two")
	onlyNew := x509.NewCertPool()
	onlyNew.AddCert(ca2)
	waitFor(t, 10*time.Second, "both leaves under the new root", func() bool {
		return m.Certificate("web").Verify(onlyNew, time.Now()) == nil && m.Certificate("gateway").Verify(onlyNew, time.Now()) == nil
	})
	target := res.sent.Load() + 400
	waitFor(t, 20*time.Second, "400 more requests", func() bool { return res.sent.Load() >= target })
	close(stop)
	wg.Wait()
	for _, cl := range clients {
		cl.CloseIdleConnections()
	}
	sent, failed := res.sent.Load(), res.failed.Load()
	t.Logf("load: %d sent, %d failed", sent, failed)
	if sent < 400 || failed != 0 {
		t.Fatalf("%d of %d requests failed (want 0 of >= 400); first errors: %v", failed, sent, res.errs)
	}
	roots := m.Roots()
	if len(roots) != 2 || !roots[0].Equal(ca1) || !roots[1].Equal(ca2) {
		t.Fatalf("bundle has %d roots, want the old and the new", len(roots))
	}
}

func TestSetPolicyRenewsEarlierAtOnce(t *testing.T) {
	fca := newTestCA(t, "ca", time.Hour)
	m := runManager(t, Options{Issuer: fca, MinRefresh: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := m.Wait(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	// Default: renewal 1/3 of 61m before expiry, i.e. ~40m from now.
	if d := time.Until(m.RenewAt(first)); d < 30*time.Minute {
		t.Fatalf("renewal due in %s, want ~40m", d)
	}
	if err := m.SetPolicy(ir.CertPolicy{RenewBefore: -time.Second}); err == nil {
		t.Fatal("negative renewBefore accepted")
	}
	// RenewBefore beyond the remaining life: due now; the sleeping loop
	// must wake and renew without waiting 40 minutes.
	if err := m.SetPolicy(ir.CertPolicy{RenewBefore: 60*time.Minute + 59*time.Second}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a renewal after the policy change", func() bool { return m.Certificate("svc").Serial() != first.Serial() })
}
