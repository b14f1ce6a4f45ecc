package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
	"github.com/meshwarden/meshwarden/controlplane/certs"
	"github.com/meshwarden/meshwarden/internal/pemcert"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
)

// startStackOpts is startStack with every option the caller wants.
func startStackOpts(t *testing.T, opts demo.StackOptions) *demo.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e needs Consul and child processes; run without -short")
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "stack.log"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Binary, opts.FiltersDir, opts.PolicyDir = testEnv.binary, testEnv.filtersDir, testEnv.policyDir
	opts.WorkDir, opts.Log = t.TempDir(), logf
	st := demo.NewStack(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := st.Start(ctx); err != nil {
		logf.Close()
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("stack: %v\n--- stack log (tail) ---\n%s", err, tail(string(b), 4000))
	}
	t.Cleanup(func() {
		st.Stop()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("--- stack log (tail) ---\n%s", tail(string(b), 6000))
		}
	})
	return st
}

// tlsProbe sends requests through the gateway every 50ms and records the
// certificates of the connection each one travelled on, as the upstream
// reports them in its echo: the gateway's client leaf and the upstream's
// server leaf.
type tlsProbe struct {
	mu       sync.Mutex
	sent     int
	failed   int
	errs     []string
	recent   []demo.EchoTLS // the latest answers, newest last (bounded)
	clients  map[string]bool
	servers  map[string]bool
	versions map[string]int

	cancel context.CancelFunc
	done   chan struct{}
}

func startTLSProbe(c *demo.Client) *tlsProbe {
	ctx, cancel := context.WithCancel(context.Background())
	p := &tlsProbe{clients: map[string]bool{}, servers: map[string]bool{}, versions: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			hdr := map[string]string{"x-user-id": fmt.Sprintf("probe-%d", i%50)}
			if i%2 == 1 {
				hdr["x-canary"] = "true" // every other probe to v2
			}
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			r, err := c.Do(rctx, http.MethodGet, "/probe", hdr, nil)
			rcancel()
			p.record(ctx, r, err)
		}
	}()
	return p
}

func (p *tlsProbe) record(ctx context.Context, r demo.Reply, err error) {
	if ctx.Err() != nil {
		return // stopping: a request cut by the probe's own cancel is not a failure
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
	switch {
	case err != nil:
		err = fmt.Errorf("probe: %w", err)
	case r.Status != http.StatusOK:
		err = fmt.Errorf("probe: status %d: %.200s", r.Status, r.Body)
	case r.Echo.TLS == nil:
		err = fmt.Errorf("probe: the upstream reports no mTLS connection (echo %+v)", r.Echo)
	}
	if err != nil {
		p.failed++
		if len(p.errs) < 5 {
			p.errs = append(p.errs, err.Error())
		}
		return
	}
	t := *r.Echo.TLS
	p.clients[t.ClientSerial] = true
	p.servers[t.ServerSerial] = true
	p.versions[r.Echo.Version]++
	p.recent = append(p.recent, t)
	if len(p.recent) > 200 {
		p.recent = p.recent[len(p.recent)-100:]
	}
}

// lastN returns up to n of the latest answers.
func (p *tlsProbe) lastN(n int) []demo.EchoTLS {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.recent) < n {
		n = len(p.recent)
	}
	return append([]demo.EchoTLS(nil), p.recent[len(p.recent)-n:]...)
}

// serials returns copies of the client and server serials seen so far.
func (p *tlsProbe) serials() (clients, servers map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	clients, servers = map[string]bool{}, map[string]bool{}
	for k := range p.clients {
		clients[k] = true
	}
	for k := range p.servers {
		servers[k] = true
	}
	return clients, servers
}

// clear forgets the answers recorded so far (not the counts).
func (p *tlsProbe) clear() {
	p.mu.Lock()
	p.recent = nil
	p.mu.Unlock()
}

func (p *tlsProbe) stop() {
	p.cancel()
	<-p.done
}

func (p *tlsProbe) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("sent=%d failed=%d versions=%v client serials=%d server serials=%d errors=%v", p.sent, p.failed, p.versions, len(p.clients), len(p.servers), p.errs)
}

func activeConnectRoot(t *testing.T, c *api.Client) *x509.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	root, _, err := consulagent.ActiveRoot(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// agentLeaf returns the Consul agent's current leaf for service (the same
// cached leaf the plane serves over SDS for it).
func agentLeaf(t *testing.T, c *api.Client, service string) *certs.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, _, err := c.Agent().ConnectCALeaf(service, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatalf("leaf for %s: %v", service, err)
	}
	cert, err := certs.NewCertificate(service, []byte(l.CertPEM), []byte(l.PrivateKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// dialUpstream handshakes with u presenting cert (nil: none) and returns
// the server's chain, or the error of the handshake and first exchange.
func dialUpstream(u *demo.Upstream, cert *certs.Certificate) ([]*x509.Certificate, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
		InsecureSkipVerify: true, //nolint:gosec // the test inspects the chain itself
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert.TLS()}
	}
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", u.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.Addr, err)
	}
	defer conn.Close()
	tc := conn.(*tls.Conn)
	// TLS 1.3: the server's verdict on the client certificate arrives with
	// the first read.
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(tc, "GET /healthz HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n"); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, 64)
	n, err := tc.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if string(buf[:min(n, 12)]) != "HTTP/1.1 200" {
		return nil, fmt.Errorf("answer %q", buf[:n])
	}
	return tc.ConnectionState().PeerCertificates, nil
}

// signedBy reports whether leaf (with intermediates) chains to root alone.
func signedBy(chain []*x509.Certificate, root *x509.Certificate) error {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return pemcert.VerifyChain(chain, pool, time.Time{})
}

// metricSum adds up every sample of metric on a Prometheus text endpoint.
func metricSum(t *testing.T, url, metric string) float64 {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("scrape %s: %q: %v", url, line, err)
		}
		sum += v
	}
	return sum
}

// TestCertRotationUnderLoad runs the whole stack over mTLS (plane --mtls,
// the gateway presenting its SDS leaf, Connect-native upstreams with their
// own leaves) with steady load through the gateway, through (a) leaf
// renewals (a 2m LeafCertTTL makes the agent re-sign every leaf within
// seconds) and (b) a CA root rotation (a new CA private key). It asserts
// requests sent and 0 failures, and that afterwards both sides of the
// gateway -> upstream connection present new certificates signed under the
// new root.
func TestCertRotationUnderLoad(t *testing.T) {
	st := startStackOpts(t, demo.StackOptions{MTLS: true, LeafCertTTL: "2m"})
	c := st.NewClient()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	requireMTLSOnlyGateway(ctx, t, st, c)
	oldRoot := activeConnectRoot(t, st.ConsulAPI)

	load := startLoader(c, http.MethodGet, "/hello", 100, func(id string) map[string]string {
		return map[string]string{"x-user-id": id}
	}, nil)
	probe := startTLSProbe(c)
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			load.stop()
			probe.stop()
		}
	}
	defer stopAll()

	// (a) Leaf renewal under load: both the gateway's leaf (through the
	// plane's SDS) and the upstreams' leaves change at least five times, as
	// the connections carrying the probes report them.
	eventually(t, 90*time.Second, "five renewals of the gateway's and the upstreams' leaves and 1000 requests", func() (bool, string) {
		cl, sv := probe.serials()
		return len(cl) >= 6 && len(sv) >= 6 && load.sent.Load() >= 1000, fmt.Sprintf("load %s; probes %s", load, probe)
	})
	clientsBefore, serversBefore := probe.serials()
	sentAtRenewal := load.sent.Load()
	t.Logf("leaf renewals under load: gateway leaves seen %d, upstream leaves seen %d; load %s", len(clientsBefore), len(serversBefore), load)

	// (b) Root rotation under load.
	if err := consulagent.RotateRoot(ctx, st.ConsulAPI, "2m"); err != nil {
		t.Fatal(err)
	}
	rotatedAt := time.Now()
	newRoot := activeConnectRoot(t, st.ConsulAPI)
	if newRoot.Equal(oldRoot) {
		t.Fatal("the CA configuration update did not rotate the root")
	}
	newKeyID := hex.EncodeToString(newRoot.SubjectKeyId)
	probe.clear()
	eventually(t, 90*time.Second, "40 answers in a row on certificates signed under the new root", func() (bool, string) {
		last := probe.lastN(40)
		if len(last) < 40 {
			return false, fmt.Sprintf("%d answers since the rotation", len(last))
		}
		for _, e := range last {
			if e.ClientIssuerID != newKeyID || e.ServerIssuerID != newKeyID {
				return false, fmt.Sprintf("answer on client leaf %s (issuer %s), server leaf %s (issuer %s); new root key id %s",
					e.ClientSerial, e.ClientIssuerID, e.ServerSerial, e.ServerIssuerID, newKeyID)
			}
		}
		return true, ""
	})
	switched := time.Since(rotatedAt)
	// Keep the load on after the switch (more leaf renewals under the new
	// root), then stop it.
	target := load.sent.Load() + 1000
	eventually(t, 60*time.Second, "1000 more requests after the switch", func() (bool, string) {
		return load.sent.Load() >= target, load.String()
	})
	stopAll()

	sent, failed := load.sent.Load(), load.failed.Load()
	t.Logf("load: %s (%d sent before the root rotation); probes: %s; all traffic on the new root %s after the rotation",
		load, sentAtRenewal, probe, switched.Round(time.Millisecond))
	if sent < 2000 {
		t.Fatalf("only %d requests sent: the load did not run", sent)
	}
	if failed != 0 || probe.failed != 0 {
		t.Fatalf("%d of %d load requests and %d of %d probes failed through the rotations: %s; %s", failed, sent, probe.failed, probe.sent, load, probe)
	}

	// Nothing was hidden by the gateway's retries (the canary route allows
	// 2) and no gateway handshake was refused by an upstream: the one
	// refusal is the intruder's above.
	if n := metricSum(t, "http://"+st.GatewayAdmin+"/metrics", "meshwarden_gateway_upstream_retries_total"); n != 0 {
		t.Fatalf("the gateway retried %v upstream attempts during the rotations", n)
	}
	refused := int64(0)
	for _, u := range st.Upstreams {
		refused += u.Handshakes().Rejected
	}
	if refused != 1 {
		t.Fatalf("the upstreams refused %d handshakes, want 1 (the intruder's)", refused)
	}

	requireAllOnNewRoot(t, st, probe, clientsBefore, serversBefore, newRoot)
}

// requireMTLSOnlyGateway checks that the gateway -> upstream path is mTLS
// end to end and admits only the gateway's SPIFFE id, on short-lived leaves.
func requireMTLSOnlyGateway(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client) {
	t.Helper()
	// The path is mTLS end to end and admits only the gateway.
	r, err := c.Do(ctx, http.MethodGet, "/hello", nil, nil)
	if err != nil || r.Status != http.StatusOK || r.Echo.TLS == nil {
		t.Fatalf("first request through the gateway: status %d, tls %+v, err %v, body %.200s", r.Status, r.Echo.TLS, err, r.Body)
	}
	if r.Echo.TLS.ClientID != st.GatewayID {
		t.Fatalf("upstream saw client %q, want the gateway %q", r.Echo.TLS.ClientID, st.GatewayID)
	}
	up := st.Upstreams[0]
	eventually(t, 30*time.Second, "leaves with the short LeafCertTTL", func() (bool, string) {
		l := up.Certificate().Lifetime()
		return l <= 5*time.Minute, fmt.Sprintf("upstream leaf lifetime %s (did something reset Consul's LeafCertTTL?)", l)
	})
	if _, err := dialUpstream(up, nil); err == nil {
		t.Fatal("the upstream answered a client without a certificate")
	}
	if _, err := dialUpstream(up, agentLeaf(t, st.ConsulAPI, "intruder")); err == nil {
		t.Fatal("the upstream answered a client with another service's SPIFFE id")
	}
	if _, err := dialUpstream(up, agentLeaf(t, st.ConsulAPI, "meshwarden-gateway")); err != nil {
		t.Fatalf("the upstream refused the gateway's leaf: %v", err)
	}
	// (A client without a certificate fails in crypto/tls before the SPIFFE
	// check; the intruder reaches it and is counted.)
	if h := up.Handshakes(); h.Rejected < 1 {
		t.Fatalf("upstream counted %d refused handshakes, want >= 1 (the intruder)", h.Rejected)
	}
}

// requireAllOnNewRoot checks that, after a root rotation, no connection
// uses a certificate from before it and that both sides of every gateway ->
// upstream connection present leaves chaining to newRoot.
func requireAllOnNewRoot(t *testing.T, st *demo.Stack, probe *tlsProbe, clientsBefore, serversBefore map[string]bool, newRoot *x509.Certificate) {
	t.Helper()
	// Old certificates are no longer served or presented.
	for _, e := range probe.lastN(40) {
		if clientsBefore[e.ClientSerial] || serversBefore[e.ServerSerial] {
			t.Fatalf("after the rotation a connection still used a certificate from before it: %+v", e)
		}
	}
	gw := agentLeaf(t, st.ConsulAPI, "meshwarden-gateway")
	if err := signedBy(append([]*x509.Certificate{gw.Leaf}, gw.Intermediates...), newRoot); err != nil {
		t.Fatalf("the gateway's current leaf does not chain to the new root: %v", err)
	}
	for _, u := range st.Upstreams {
		// What the upstream sees: the gateway's client certificate on its
		// latest handshake from the gateway (the probes' were the last).
		h := u.Handshakes()
		if h.LastClient == nil {
			t.Fatalf("%s: no client certificate seen", u.ID())
		}
		if err := h.LastClient.CheckSignatureFrom(newRoot); err != nil {
			t.Fatalf("%s: the latest client leaf %x is not signed by the new root: %v", u.ID(), h.LastClient.SerialNumber.Bytes(), err)
		}
		// What the gateway sees: the upstream's server certificate on a new
		// handshake, presenting the gateway's current leaf.
		chain, err := dialUpstream(u, gw)
		if err != nil {
			t.Fatalf("%s: handshake with the gateway's current leaf: %v", u.ID(), err)
		}
		served := hex.EncodeToString(chain[0].SerialNumber.Bytes())
		if serversBefore[served] {
			t.Fatalf("%s still serves leaf %s from before the rotation", u.ID(), served)
		}
		if err := signedBy(chain, newRoot); err != nil {
			t.Fatalf("%s serves leaf %s that does not chain to the new root: %v", u.ID(), served, err)
		}
		if err := u.Certs().Ready(); err != nil {
			t.Fatalf("%s: certificates not ready after the rotations: %v", u.ID(), err)
		}
		t.Logf("%s: %d handshakes accepted, %d refused; serves %s", u.ID(), h.Accepted, h.Rejected, served)
	}
}

// TestDemoStoryMTLS is the demo's story on the stack `meshwarden demo` runs
// by default: mTLS from the gateway to Connect-native upstreams.
func TestDemoStoryMTLS(t *testing.T) {
	st := startStackOpts(t, demo.StackOptions{MTLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out strings.Builder
	sum, err := demo.Story(ctx, st, 200, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.OptIn.ByVersion["v2"]; got != 20 || sum.OptIn.Failed != 0 {
		t.Errorf("opt-in canary: %d/20 to v2, %d failed; want 20/20", got, sum.OptIn.Failed)
	}
	if sum.Users.Failed != 0 || sum.UsersAgain.Failed != 0 || sum.StickyMismatch != 0 {
		t.Errorf("split traffic: %d + %d failed, %d lane changes", sum.Users.Failed, sum.UsersAgain.Failed, sum.StickyMismatch)
	}
	if sum.Spoofed.ByVersion["v2"] != 0 || sum.Transfers != 5 || !sum.VerifyOK || len(sum.TraceSpans) < 2 {
		t.Errorf("spoofed to v2 %d, transfers %d/5, verify %v, spans %d", sum.Spoofed.ByVersion["v2"], sum.Transfers, sum.VerifyOK, len(sum.TraceSpans))
	}
	// With mTLS the gateway's dump holds its leaf: the operator sees the
	// chain, never the key; an attacker gets nothing.
	if tr := sum.Trust; tr == nil || !tr.DumpHasLeaf || !tr.DumpRedacted || tr.AnonymousXDS != "Unauthenticated" || tr.ImpersonatedXDS != "PermissionDenied" {
		t.Errorf("zero-trust section over mTLS: %+v; want the leaf dumped with its key redacted, attacks refused", tr)
	}
	// The operator's CLI against the secure plane: diff and status work
	// with the operator's token and print no secret; without a token the
	// plane refuses and the CLI says what to give.
	secrets := []string{"PRIVATE KEY"}
	for _, f := range []string{st.GatewayTokenFile, st.OperatorTokenFile, st.PlaneTokenFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(b)))
	}
	for _, args := range [][]string{
		append([]string{"policy", "diff", st.PolicyDir}, st.PlaneFlags()...),
		append([]string{"policy", "diff", st.PolicyDir, "--format", "json"}, st.PlaneFlags()...),
		append([]string{"policy", "status", "--format", "json"}, st.PlaneFlags()...),
	} {
		out, err := exec.CommandContext(ctx, testEnv.binary, args...).CombinedOutput()
		if err != nil {
			t.Errorf("meshwarden %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
		for _, sec := range secrets {
			if strings.Contains(string(out), sec) {
				t.Errorf("meshwarden %s prints a secret (%.12s…)", strings.Join(args, " "), sec)
			}
		}
	}
	noToken := exec.CommandContext(ctx, testEnv.binary, "policy", "status", "--plane", st.PlaneAdmin, "--ca-file", st.CAFile)
	noToken.Env = append(os.Environ(), "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_TOKEN_FILE=")
	if out, err := noToken.CombinedOutput(); err == nil || !strings.Contains(string(out), "no Consul ACL token") {
		t.Errorf("policy status without a token: %v\n%s", err, out)
	}
	// Every request reached the upstreams over mTLS as the gateway.
	r, err := st.NewClient().Do(ctx, http.MethodGet, "/hello", nil, nil)
	if err != nil || r.Echo.TLS == nil || r.Echo.TLS.ClientID != st.GatewayID {
		t.Fatalf("request after the story: tls %+v, err %v; want client %s", r.Echo.TLS, err, st.GatewayID)
	}
	if a := sum.Access; a == nil || a.Err != "" || a.Listed != http.StatusOK || a.Unlisted != http.StatusForbidden || !strings.Contains(a.Record, `"op_type":"ACCESS_DENIED"`) {
		t.Errorf("access step: %+v; want listed 200, unlisted 403 and its ACCESS_DENIED record", a)
	}
	i := strings.Index(out.String(), "== 6. Certificates")
	if i < 0 {
		t.Fatal("the story printed no certificates section")
	}
	certsOut := out.String()[i:]
	for _, want := range []string{"active, serial", st.GatewayID, "/svc/payments", "the plane serves it over SDS as mw-leaf:meshwarden-gateway", "the gateway holds it", "0 refused"} {
		if !strings.Contains(certsOut, want) {
			t.Errorf("the certificates section lacks %q:\n%s", want, certsOut)
		}
	}
}
