package demo

import (
	"context"
	"errors"
	"fmt"
	"github.com/meshwarden/meshwarden/internal/logflags"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
	"github.com/meshwarden/meshwarden/internal/testenv/proc"
	"github.com/meshwarden/meshwarden/internal/testenv/promagent"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
)

// StackOptions configure a [Stack].
type StackOptions struct {
	// Binary is the meshwarden executable the plane, collector and gateway
	// run as (child processes, so they can be killed -9 and restarted).
	Binary string
	// FiltersDir holds the built <name>.wasm filters.
	FiltersDir string
	// PolicyDir is copied into the work dir; the plane watches the copy.
	PolicyDir string
	// WorkDir holds every process's state; it must exist.
	WorkDir string
	// Log receives every child's output, prefixed; nil discards it.
	Log io.Writer
	// Progress receives one line per step; nil discards it.
	Progress io.Writer
	// Logs are the log format and level of every process the stack starts
	// (passed as --log-format/--log-level) and of its in-process upstreams.
	Logs logflags.Flags
	// MTLS brings the stack up with mutual TLS: the plane serves Consul
	// Connect certificates over SDS (--mtls), the gateway presents its leaf
	// to the upstreams and checks their SPIFFE ids, and the upstreams are
	// Connect-native (their own leaves, admitting only the gateway's id).
	MTLS bool
	// LeafCertTTL, with MTLS, sets the Connect CA's LeafCertTTL before any
	// leaf is issued (validation skipped, so tests may go below Consul's 1h
	// minimum: "2m" makes the agent re-sign leaves every few seconds).
	// Empty keeps Consul's default (72h) until the plane applies the
	// CertificatePolicy's leafTTL; when set, the CertificatePolicy files
	// are left out of the policy copy so that the plane does not reset it.
	LeafCertTTL string
	// AuditToken is the shared token between the audit filter and the
	// collector; empty means a fixed demo token.
	AuditToken string
	// Replicas is the number of control plane replicas (default 1). They
	// share Consul (and its KV policy store) and the policy directory; the
	// gateway knows every replica's address and fails over.
	Replicas int
	// InsecurePlane runs the plane with --insecure-dev (plaintext,
	// anonymous xDS and admin) on a Consul without ACLs: only for
	// comparing against the secure default (benchmarks).
	InsecurePlane bool
	// Prometheus runs a real Prometheus (Debian's package) scraping the
	// gateway and the plane every PrometheusScrape (default 1s), with
	// PrometheusRules loaded, and gives the plane --prometheus-url so
	// Rollout policies are analysed against it.
	Prometheus       bool
	PrometheusScrape time.Duration
	PrometheusRules  []string
}

// Stack is the whole product running on this machine: a real Consul agent,
// the audit collector, the control plane, the gateway, two versions of the
// payments upstream and an OTLP sink.
type Stack struct {
	opts StackOptions

	Consul    *consulagent.Agent
	ConsulAPI *api.Client
	Collector *proc.Proc
	Plane     *proc.Proc
	// Replicas are the planes after the first (StackOptions.Replicas).
	Replicas  []*Replica
	Gateway   *proc.Proc
	Upstreams []*Upstream
	Sink      *otlpsink.Sink

	// GatewayID is the gateway's SPIFFE id, the only client the mTLS
	// upstreams admit (set with MTLS).
	GatewayID string

	PolicyDir     string
	CollectorAddr string
	AuditDir      string
	AuditPubKey   string
	PlaneXDS      string
	// PlaneAdmin is the plane's authenticated admin API (HTTPS; see
	// AdminClient), PlanePublic its anonymous probes and module server.
	PlaneAdmin  string
	PlanePublic string
	// CAFile holds the Connect CA roots: what the gateway and the CLI
	// check the plane's certificate against.
	CAFile string
	// Tokens are the Consul ACL token files of each part (0600): the
	// plane's own, the gateway's (service:write on meshwarden-gateway), an
	// operator's (operator:read, mesh:write) and the audit collector's.
	PlaneTokenFile, GatewayTokenFile, OperatorTokenFile, CollectorTokenFile string
	// ManagementToken is the Consul agent's initial management token
	// (ConsulAPI sends it).
	ManagementToken string
	GatewayAddr     string
	GatewayAdmin    string
	OTLPAddr        string
	// Prometheus is the server StackOptions.Prometheus started.
	Prometheus *promagent.Server

	sinkSrv *http.Server
}

// NewStack prepares a stack; Start brings it up.
func NewStack(opts StackOptions) *Stack {
	if opts.AuditToken == "" {
		opts.AuditToken = "meshwarden-demo-token"
	}
	return &Stack{opts: opts}
}

func (s *Stack) step(format string, a ...any) {
	if s.opts.Progress != nil {
		fmt.Fprintf(s.opts.Progress, "  • "+format+"\n", a...)
	}
}

// Start brings every part up, in dependency order, and waits until each is
// ready. On error everything already started is stopped.
func (s *Stack) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	w := s.opts.WorkDir
	if err := s.preparePolicies(); err != nil {
		return err
	}

	if !s.opts.InsecurePlane {
		s.ManagementToken = consulagent.NewToken()
	}
	s.step("starting Consul agent (real, persistent data dir, ACLs on with default deny)")
	s.Consul, err = consulagent.Start(ctx, consulagent.Options{DataDir: filepath.Join(w, "consul"), ManagementToken: s.ManagementToken})
	if err != nil {
		return err
	}
	if s.ConsulAPI, err = s.Consul.Client(); err != nil {
		return err
	}
	s.step("Consul at http://%s", s.Consul.Addr())
	if !s.opts.InsecurePlane {
		if err := s.prepareCredentials(ctx); err != nil {
			return err
		}
	}

	if err := s.startSink(); err != nil {
		return err
	}
	s.step("OTLP trace sink at http://%s/v1/traces", s.OTLPAddr)

	if s.opts.MTLS {
		if err := s.prepareMTLS(ctx); err != nil {
			return err
		}
	}
	if err := s.StartCollector(ctx); err != nil {
		return err
	}
	if s.opts.MTLS && !s.opts.InsecurePlane {
		s.step("audit collector at https://%s (mTLS: Connect leaf of %s; admits %s and the access step's ledger sidecar; WAL in %s)", s.CollectorAddr, meshnames.CollectorServiceName, s.GatewayID, s.AuditDir)
	} else {
		s.step("audit collector at http://%s (WAL in %s)", s.CollectorAddr, s.AuditDir)
	}

	for _, v := range []string{"v1", "v2"} {
		u, err := s.startUpstream(ctx, "payments", v)
		if err != nil {
			return err
		}
		s.Upstreams = append(s.Upstreams, u)
		if err := u.Register(s.ConsulAPI); err != nil {
			return err
		}
		if s.opts.MTLS {
			s.step("upstream payments %s at https://%s (Connect-native, leaf serial %s, admits only %s), registered in Consul with meta version=%s",
				v, u.Addr, u.Certificate().Serial(), s.GatewayID, v)
		} else {
			s.step("upstream payments %s at http://%s, registered in Consul with meta version=%s", v, u.Addr, v)
		}
	}

	if s.PlaneXDS, err = proc.FreeAddr(); err != nil {
		return err
	}
	if err := s.startPrometheus(ctx); err != nil {
		return err
	}
	if s.PlaneAdmin, err = proc.FreeAddr(); err != nil {
		return err
	}
	if s.PlanePublic == "" {
		if s.PlanePublic, err = proc.FreeAddr(); err != nil {
			return err
		}
	}
	// The gateway's addresses come first: the plane scores subset health
	// from the gateway's /metrics (--health-scrape).
	if s.GatewayAddr, err = proc.FreeAddr(); err != nil {
		return err
	}
	if s.GatewayAdmin == "" { // startPrometheus chose it to scrape
		if s.GatewayAdmin, err = proc.FreeAddr(); err != nil {
			return err
		}
	}
	if err := s.StartPlane(ctx); err != nil {
		return err
	}
	if s.opts.InsecurePlane {
		s.step("control plane (INSECURE, --insecure-dev): xDS %s, admin http://%s", s.PlaneXDS, s.PlaneAdmin)
	} else {
		s.step("control plane: xDS over TLS at %s (Consul ACL token per stream), admin https://%s (token), probes and modules http://%s", s.PlaneXDS, s.PlaneAdmin, s.PlanePublic)
	}

	if err := s.startReplicas(ctx); err != nil {
		return err
	}
	if err := s.StartGateway(ctx); err != nil {
		return err
	}
	s.step("gateway: traffic http://%s, admin http://%s", s.GatewayAddr, s.GatewayAdmin)
	return s.waitRoutable(ctx)
}

// waitRoutable returns once a request through the gateway reaches payments.
// The gateway's readiness means a complete configuration, not that Consul
// already reports an instance healthy: the stack is up when traffic flows.
func (s *Stack) waitRoutable(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c := s.NewClient()
	var last string
	for {
		r, err := c.Do(wctx, http.MethodGet, "/hello", nil, nil)
		if err == nil && r.Status == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("status %d: %.200s", r.Status, r.Body)
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("the gateway is ready but GET /hello to payments through it still fails after 60s (%s): check payments' health in Consul (http://%s/v1/health/service/payments) and the plane's http://%s/v1/status", last, s.Consul.Addr(), s.PlaneAdmin)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prepareMTLS applies LeafCertTTL and works out the gateway's SPIFFE id
// from the Connect CA's trust domain and the agent's datacenter (as the
// plane does for the ids it matches on upstream certificates).
func (s *Stack) prepareMTLS(ctx context.Context) error {
	if s.opts.LeafCertTTL != "" {
		if err := consulagent.SetCAConfig(ctx, s.ConsulAPI, map[string]any{"LeafCertTTL": s.opts.LeafCertTTL}); err != nil {
			return err
		}
		s.step("Connect CA LeafCertTTL set to %s", s.opts.LeafCertTTL)
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(qctx)
	roots, _, err := s.ConsulAPI.Connect().CARoots(q)
	if err != nil {
		return fmt.Errorf("mtls: read Connect CA roots: %w", err)
	}
	// The local datacenter: the catalog's nodes answer for it.
	nodes, _, err := s.ConsulAPI.Catalog().Nodes(q)
	if err != nil {
		return fmt.Errorf("mtls: read the agent's datacenter: %w", err)
	}
	dc := ""
	if len(nodes) > 0 {
		dc = nodes[0].Datacenter
	}
	if roots.TrustDomain == "" || dc == "" {
		return fmt.Errorf("mtls: Consul reports trust domain %q, datacenter %q", roots.TrustDomain, dc)
	}
	s.GatewayID = translate.SPIFFEID(roots.TrustDomain, dc, meshnames.GatewayNodeCluster)
	return nil
}

// startUpstream starts one upstream instance: plain HTTP, or with MTLS a
// Connect-native one with its own leaf admitting only the gateway.
func (s *Stack) startUpstream(ctx context.Context, service, version string) (*Upstream, error) {
	if !s.opts.MTLS {
		return StartUpstream(service, version)
	}
	w := s.opts.Log
	if w == nil {
		w = io.Discard
	}
	h, err := s.opts.Logs.Handler(w)
	if err != nil {
		return nil, err
	}
	logger := slog.New(h).With("proc", service+"-"+version)
	return StartUpstreamMTLS(ctx, service, version, MTLSOptions{Consul: s.ConsulAPI, AllowClient: s.GatewayID, Logger: logger})
}

// preparePolicies copies the policy directory into the work dir and gives
// the audit policy the collector's sender token.
func (s *Stack) preparePolicies() error {
	s.PolicyDir = filepath.Join(s.opts.WorkDir, "policies")
	if err := os.MkdirAll(s.PolicyDir, 0o755); err != nil {
		return fmt.Errorf("policy dir: %w", err)
	}
	entries, err := os.ReadDir(s.opts.PolicyDir)
	if err != nil {
		return fmt.Errorf("read policies %s: %w", s.opts.PolicyDir, err)
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.opts.PolicyDir, e.Name()))
		if err != nil {
			return err
		}
		if s.opts.LeafCertTTL != "" && strings.Contains(string(data), "kind: CertificatePolicy") {
			// The plane would set the policy's leafTTL (>= 1h) on Consul's
			// CA, undoing LeafCertTTL; the stack's lifetime wins.
			s.step("policy %s left out: LeafCertTTL %s sets the leaf lifetime", e.Name(), s.opts.LeafCertTTL)
			continue
		}
		if strings.Contains(string(data), "kind: AuditPolicy") && !strings.Contains(string(data), "token:") {
			data = []byte(strings.Replace(string(data), "\nspec:\n", "\nspec:\n  collector:\n    token: "+s.opts.AuditToken+"\n", 1))
		}
		if err := os.WriteFile(filepath.Join(s.PolicyDir, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stack) startSink() error {
	s.Sink = otlpsink.New(100000)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("otlp sink: %w", err)
	}
	s.OTLPAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/v1/traces", s.Sink)
	s.sinkSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.sinkSrv.Serve(ln) }()
	return nil
}

// StartCollector starts (or restarts, on the same address and WAL) the
// audit collector.
func (s *Stack) StartCollector(ctx context.Context) error {
	w := s.opts.WorkDir
	s.AuditDir = filepath.Join(w, "audit")
	key := filepath.Join(w, "audit.key")
	s.AuditPubKey = filepath.Join(w, "audit.pub")
	token := filepath.Join(w, "audit.token")
	if _, err := os.Stat(key); errors.Is(err, os.ErrNotExist) {
		if out, err := runCmd(ctx, s.opts.Binary, "audit", "keygen", "--out", key, "--pub", s.AuditPubKey); err != nil {
			return fmt.Errorf("audit keygen: %w\n%s", err, out)
		}
		if err := os.WriteFile(token, []byte(s.opts.AuditToken+"\n"), 0o600); err != nil {
			return err
		}
	}
	listen := s.CollectorAddr
	if listen == "" {
		var err error
		if listen, err = proc.FreeAddr(); err != nil {
			return err
		}
	}
	var env []string
	if s.CollectorTokenFile != "" {
		env = append(env, "CONSUL_HTTP_TOKEN_FILE="+s.CollectorTokenFile)
	}
	args := []string{"audit", "collector",
		"--dir", s.AuditDir, "--key", key, "--token-file", token, "--listen", listen,
		"--consul", s.Consul.Addr(), "--checkpoint-interval", "1s"}
	tlsArgs, probe, err := s.collectorTLS(ctx)
	if err != nil {
		return err
	}
	args = append(args, tlsArgs...)
	args = append(args, s.opts.Logs.Args()...)
	p, err := proc.StartEnv("collector", s.opts.Log, env, s.opts.Binary, args...)
	if err != nil {
		return err
	}
	s.Collector, s.CollectorAddr = p, listen
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if probe != nil {
		return p.WaitHTTPClient(wctx, probe, "https://"+listen+"/healthz")
	}
	return p.WaitHTTP(wctx, "http://"+listen+"/healthz")
}

// collectorTLS returns, with mTLS, the collector's TLS flags — its Consul
// Connect leaf (service meshwarden-audit) and the Connect roots, admitting
// the gateway and the access step's ledger sidecar by SPIFFE id: the audit
// filter then sends over mTLS with each proxy's own leaf and no shared
// token — and a client for its readiness probe. Without mTLS: none.
func (s *Stack) collectorTLS(ctx context.Context) ([]string, *http.Client, error) {
	if !s.opts.MTLS || s.opts.InsecurePlane || s.GatewayID == "" {
		return nil, nil, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	leaf, _, err := s.ConsulAPI.Agent().ConnectCALeaf(meshnames.CollectorServiceName, (&api.QueryOptions{}).WithContext(qctx))
	if err != nil {
		return nil, nil, fmt.Errorf("collector leaf: %w", err)
	}
	cert, key := filepath.Join(s.opts.WorkDir, "collector.crt"), filepath.Join(s.opts.WorkDir, "collector.key")
	if err := os.WriteFile(cert, []byte(leaf.CertPEM), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(key, []byte(leaf.PrivateKeyPEM), 0o600); err != nil {
		return nil, nil, err
	}
	ledger := strings.TrimSuffix(s.GatewayID, meshnames.GatewayNodeCluster) + "ledger"
	probeTLS, err := auth.PlaneTLS(s.CAFile)
	if err != nil {
		return nil, nil, err
	}
	// The probe checks the chain only (the collector is not the plane).
	probeTLS.VerifyConnection = nil
	probeTLS.InsecureSkipVerify = true //nolint:gosec // local readiness probe of our own child process
	return []string{"--tls-cert", cert, "--tls-key", key, "--client-ca", s.CAFile,
			"--allow-spiffe", s.GatewayID, "--allow-spiffe", ledger},
		&http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: probeTLS}}, nil
}

// Replica is a control plane replica after the first.
type Replica struct {
	Proc               *proc.Proc
	XDS, Admin, Public string
}

// StartPlane starts (or restarts, on the same addresses) the control plane.
func (s *Stack) StartPlane(ctx context.Context) error {
	p, err := s.startPlaneAt(ctx, "plane", s.PlaneXDS, s.PlaneAdmin, s.PlanePublic)
	if err != nil {
		return err
	}
	s.Plane = p
	return nil
}

// startReplicas starts StackOptions.Replicas-1 more planes.
func (s *Stack) startReplicas(ctx context.Context) error {
	for i := 1; i < s.opts.Replicas; i++ {
		r := &Replica{}
		var err error
		for _, a := range []*string{&r.XDS, &r.Admin, &r.Public} {
			if *a, err = proc.FreeAddr(); err != nil {
				return err
			}
		}
		if r.Proc, err = s.startPlaneAt(ctx, fmt.Sprintf("plane-%d", i+1), r.XDS, r.Admin, r.Public); err != nil {
			return err
		}
		s.Replicas = append(s.Replicas, r)
		s.step("control plane replica %d: xDS over TLS at %s, admin https://%s (policy set shared through Consul KV)", i+1, r.XDS, r.Admin)
	}
	return nil
}

// XDSAddresses are every replica's xDS address, the first plane's first.
func (s *Stack) XDSAddresses() string {
	addrs := []string{s.PlaneXDS}
	for _, r := range s.Replicas {
		addrs = append(addrs, r.XDS)
	}
	return strings.Join(addrs, ",")
}

func (s *Stack) startPlaneAt(ctx context.Context, name, xds, admin, public string) (*proc.Proc, error) {
	args := []string{"controlplane",
		"--consul", s.Consul.Addr(), "--xds-address", xds, "--admin-addr", admin, "--public-addr", public,
		"--policy-dir", s.PolicyDir, "--filters-dir", s.opts.FiltersDir,
		"--audit-collector", s.CollectorAddr, "--otlp-endpoint", s.OTLPAddr,
		"--changelog", filepath.Join(s.opts.WorkDir, "policy-changes.jsonl"),
		"--health-scrape", "http://" + s.GatewayAdmin + "/metrics"}
	if s.opts.MTLS {
		args = append(args, "--mtls")
	}
	if s.Prometheus != nil {
		// Prometheus scrapes the plane's anonymous port (deploy/prometheus).
		args = append(args, "--prometheus-url", s.Prometheus.URL(), "--metrics-public")
	}
	if s.opts.InsecurePlane {
		args = append(args, "--insecure-dev")
	} else {
		// Revocation is checked every 2s here (default 10s), so the tests
		// of a revoked token finish quickly.
		args = append(args, "--consul-token-file", s.PlaneTokenFile, "--auth-ttl", "2s")
	}
	args = append(args, s.opts.Logs.Args()...)
	p, err := proc.Start(name, s.opts.Log, s.opts.Binary, args...)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return p, p.WaitHTTP(wctx, "http://"+public+"/readyz")
}

// StartGateway starts (or restarts, on the same addresses) the gateway and
// waits until it has a complete configuration.
func (s *Stack) StartGateway(ctx context.Context) error {
	args := []string{"gateway",
		"--xds-address", s.XDSAddresses(), "--listen", s.GatewayAddr, "--admin-addr", s.GatewayAdmin,
		"--cache-dir", filepath.Join(s.opts.WorkDir, "gateway-cache"),
		"--otlp-endpoint", s.OTLPAddr, "--node-id", "gateway-demo"}
	if s.opts.InsecurePlane {
		args = append(args, "--xds-insecure")
	} else {
		args = append(args, "--xds-ca-file", s.CAFile, "--token-file", s.GatewayTokenFile)
	}
	adminToken, err := s.GatewayAdminTokenFile()
	if err != nil {
		return err
	}
	args = append(args, "--admin-token-file", adminToken)
	args = append(args, s.opts.Logs.Args()...)
	p, err := proc.Start("gateway", s.opts.Log, s.opts.Binary, args...)
	if err != nil {
		return err
	}
	s.Gateway = p
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return p.WaitHTTP(wctx, "http://"+s.GatewayAdmin+"/readyz")
}

// Stop stops every part, newest first.
func (s *Stack) Stop() {
	procs := []*proc.Proc{s.Gateway, s.Plane}
	for _, r := range s.Replicas {
		procs = append(procs, r.Proc)
	}
	for _, p := range append(procs, s.Collector) {
		if p != nil {
			p.Stop(10 * time.Second)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, u := range s.Upstreams {
		_ = u.Close(ctx)
	}
	if s.sinkSrv != nil {
		_ = s.sinkSrv.Shutdown(ctx)
	}
	if s.Consul != nil {
		s.Consul.Stop()
	}
	if s.Prometheus != nil {
		s.Prometheus.Stop()
	}
}

// startPrometheus starts Prometheus (StackOptions.Prometheus) scraping the
// gateway's admin port and the plane's public port, both chosen here.
func (s *Stack) startPrometheus(ctx context.Context) error {
	if !s.opts.Prometheus {
		return nil
	}
	var err error
	if s.GatewayAdmin, err = proc.FreeAddr(); err != nil {
		return err
	}
	if s.PlanePublic == "" {
		if s.PlanePublic, err = proc.FreeAddr(); err != nil {
			return err
		}
	}
	dir := filepath.Join(s.opts.WorkDir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.Prometheus, err = promagent.Start(ctx, promagent.Options{ScrapeInterval: s.opts.PrometheusScrape, RuleFiles: s.opts.PrometheusRules,
		Dir: dir, Targets: []promagent.Target{
			{Job: "meshwarden-gateway", Addrs: []string{s.GatewayAdmin}},
			{Job: "meshwarden-controlplane", Addrs: []string{s.PlanePublic}},
		}})
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	s.step("Prometheus at %s scraping the gateway (%s) and the plane (%s)", s.Prometheus.URL(), s.GatewayAdmin, s.PlanePublic)
	return nil
}

func runCmd(ctx context.Context, bin string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, args...).CombinedOutput()
	return string(out), err
}
