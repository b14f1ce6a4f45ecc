package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/internal/testenv/pebbleagent"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
	"github.com/meshwarden/meshwarden/internal/testenv/promseries"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type acmeEnv struct {
	pebble *pebbleagent.Agent
	issuer *ACMEIssuer
	mgr    *Manager
	reg    *prometheus.Registry
	logs   *syncBuffer
}

// startACME runs Pebble issuing certificates valid for validity, an
// HTTP-01 challenge server on an ephemeral port and a running manager.
func startACME(t *testing.T, validity time.Duration) *acmeEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pb, err := pebbleagent.Start(ctx, pebbleagent.Options{
		ChallengePort: ln.Addr().(*net.TCPAddr).Port, Validity: validity,
	})
	if err != nil {
		ln.Close()
		t.Fatalf("pebble: %v", err)
	}
	t.Cleanup(pb.Close)
	iss, err := NewACMEIssuer(ACMEOptions{DirectoryURL: pb.DirectoryURL(), HTTPClient: pb.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: iss.HTTPHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	env := &acmeEnv{pebble: pb, issuer: iss, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	env.mgr, err = NewManager(Options{
		Issuer: iss, Registerer: env.reg, Dir: t.TempDir(),
		Logger:        slog.New(slog.NewTextHandler(env.logs, nil)),
		RetryInterval: 100 * time.Millisecond, MaxRetryInterval: 300 * time.Millisecond,
		MinRefresh: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = env.mgr.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return env
}

// startACMELeaf starts Pebble and a manager (6 s leaves) and waits for the
// first "localhost" leaf.
func startACMELeaf(ctx context.Context, t *testing.T) (*acmeEnv, *Certificate) {
	t.Helper()
	env := startACME(t, 6*time.Second)
	first, err := env.mgr.Wait(ctx, "localhost")
	if err != nil {
		t.Fatalf("%v\npebble:\n%s", err, env.pebble.Output())
	}
	return env, first
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	probe.Until(t, what, within, cond)
}

func TestACMEIssueAndRenewAgainstPebble(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env, first := startACMELeaf(ctx, t)
	if len(first.Leaf.DNSNames) != 1 || first.Leaf.DNSNames[0] != "localhost" {
		t.Fatalf("leaf DNS names = %v, want [localhost]", first.Leaf.DNSNames)
	}
	roots, err := env.pebble.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	if err := first.Verify(pool, time.Now()); err != nil {
		t.Fatalf("ACME certificate does not chain to Pebble's root: %v", err)
	}
	if got := first.Lifetime(); got < 5*time.Second || got > 7*time.Second {
		t.Fatalf("lifetime = %s, want about 6s (Pebble profile)", got)
	}

	// Renewal: due 1/3 of the life before expiry.
	var second *Certificate
	waitFor(t, 20*time.Second, "an ACME renewal", func() bool {
		second = env.mgr.Certificate("localhost")
		return second.Serial() != first.Serial()
	})
	if !second.NotAfter().After(first.NotAfter()) {
		t.Fatalf("renewed certificate expires %s, not after the first's %s", second.NotAfter(), first.NotAfter())
	}
	// When the renewal was issued, not when this poll saw it (under load
	// the poll may come after the first leaf's short life ended).
	if issued := second.Leaf.NotBefore; !issued.Before(first.NotAfter()) {
		t.Fatalf("renewal issued at %s, after the first certificate expired at %s", issued, first.NotAfter())
	}
	if err := env.mgr.Ready(); err != nil {
		t.Fatalf("Ready after a good renewal: %v", err)
	}
	if n := metricValue(t, env.reg, "meshwarden_cert_renewals_total"); n < 1 {
		t.Fatalf("renewals_total = %v, want >= 1", n)
	}
}

func TestACMEOutageKeepsCertificateAndRaisesAlarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env, first := startACMELeaf(ctx, t)
	env.pebble.Stop()

	waitFor(t, 20*time.Second, "the readiness check to fail", func() bool { return env.mgr.Ready() != nil })
	if got := env.mgr.Certificate("localhost"); got.Serial() != first.Serial() {
		t.Fatalf("serving serial %s during the outage, want the current %s", got.Serial(), first.Serial())
	}
	if err := env.mgr.Ready(); !strings.Contains(err.Error(), "renewals in a row failed") && !strings.Contains(err.Error(), "has not been renewed") {
		t.Fatalf("Ready error does not explain the failing renewal: %v", err)
	}
	if v := metricValue(t, env.reg, "meshwarden_cert_alarm"); v != 1 {
		t.Fatalf("alarm gauge = %v, want 1", v)
	}
	if v := metricValue(t, env.reg, "meshwarden_cert_renewal_failures_total"); v < 3 {
		t.Fatalf("renewal_failures_total = %v, want >= 3", v)
	}
	rec := httptest.NewRecorder()
	env.mgr.ReadyHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "localhost") {
		t.Fatalf("readiness endpoint = %d %q, want 503 naming the certificate", rec.Code, rec.Body.String())
	}
	waitFor(t, 5*time.Second, "the loud alarm log line", func() bool { return strings.Contains(env.logs.String(), "CERTIFICATE ALARM") })
	logs := env.logs.String()
	if strings.Contains(logs, "PRIVATE KEY") {
		t.Fatal("a private key reached the log")
	}

	// The CA comes back: the next attempt renews and clears the alarm.
	if err := env.pebble.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "renewal after the outage", func() bool {
		return env.mgr.Certificate("localhost").Serial() != first.Serial() && env.mgr.Ready() == nil
	})
	if v := metricValue(t, env.reg, "meshwarden_cert_alarm"); v != 0 {
		t.Fatalf("alarm gauge after recovery = %v, want 0", v)
	}
}

// metricValue returns the value of the single series of name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mf := promseries.Family(t, reg, name)
	if mf == nil {
		t.Fatalf("metric %s not found", name)
	}
	if len(mf.GetMetric()) != 1 {
		t.Fatalf("%s has %d series, want 1", name, len(mf.GetMetric()))
	}
	return promseries.Value(mf.GetMetric()[0])
}
