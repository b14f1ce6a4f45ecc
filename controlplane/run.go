package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/certs"
	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/controlplane/intentions"
	"github.com/meshwarden/meshwarden/controlplane/moduleserver"
	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/ir"
)

// RunConfig is a whole control-plane process: where it listens, which Consul
// it watches, how callers authenticate, and the Server it serves. The zero
// value of a field takes the default named in its comment (see WithDefaults);
// a false bool is off. The CLI flag of each field is given in brackets, and
// errors name it.
type RunConfig struct {
	// ConsulAddress is the Consul agent's HTTP address, host:port or URL
	// (--consul). Default 127.0.0.1:8500.
	ConsulAddress string
	// ConsulTokenFile holds the plane's own Consul ACL token
	// (--consul-token-file). Empty: $CONSUL_HTTP_TOKEN, as Consul's client reads it.
	ConsulTokenFile string
	// XDSAddress is the ADS gRPC listen address (--xds-address). Default 127.0.0.1:18000.
	XDSAddress string
	// AdminAddress is the authenticated admin API's listen address
	// (--admin-addr). Default 127.0.0.1:18001.
	AdminAddress string
	// PublicAddress serves /healthz, /readyz and /modules/ anonymously
	// (--public-addr). Default 127.0.0.1:18002.
	PublicAddress string
	// FiltersDir holds the built <name>.wasm filters (--filters-dir). Default bin/filters.
	FiltersDir string
	// ModuleBaseURL is where proxies fetch modules, sha256 appended
	// (--module-base-url). Default http://<public address>/modules/.
	ModuleBaseURL string
	// PolicyDir is a directory of policy files, polled (--policy-dir). Empty:
	// policies only through the admin API.
	PolicyDir string
	// LoadPolicies parses a policy set; required (policies.LoadFiles in production).
	LoadPolicies PolicyLoader
	// RecordChange, when set, records every applied policy set (the change log).
	RecordChange func(ctx context.Context, c PolicyChange) error
	// AuditCollector and OTLPEndpoint are host:port of the clusters mw-audit
	// and mw-otlp (--audit-collector, --otlp-endpoint). Empty: the audit
	// collector is found in Consul; no OTLP cluster.
	AuditCollector, OTLPEndpoint string
	// Debounce coalesces bursts of changes (--debounce). Default 20ms.
	Debounce time.Duration
	// Register registers the plane in Consul with a /healthz check (--register).
	Register bool
	// Intentions enforces Consul intentions for services without an
	// AccessPolicy (--intentions).
	Intentions bool
	// MTLS serves Consul Connect leaves and roots over SDS (--mtls).
	MTLS bool
	// InsecureDev serves plaintext, anonymous xDS and admin (--insecure-dev);
	// Validate refuses it unless every listen address is loopback.
	InsecureDev bool
	// MetricsPublic serves /metrics anonymously (--metrics-public).
	MetricsPublic bool
	// AuthTTL and AuthGrace bound token decisions (--auth-ttl, --auth-grace).
	// Defaults 10s and 5m.
	AuthTTL, AuthGrace time.Duration
	// PolicyStore is "consul" (shared by replicas, the default) or "memory"
	// (--policy-store).
	PolicyStore string
	// PolicyKVPrefix is the Consul KV prefix of the store
	// (--policy-kv-prefix). Default policystore.DefaultPrefix.
	PolicyKVPrefix string
	// Replica names this replica in the store's records (--replica). Default
	// <hostname>/<xDS address>.
	Replica string
	// Health scores subsets from the proxies' metrics (--health-scrape,
	// --health-interval, --health-fast-interval, --health-threshold).
	Health health.Config
	// Rollouts configures the Rollout controller (--prometheus-url,
	// --rollouts, --rollout-kv-prefix).
	Rollouts RolloutOptions
	// StopTimeout bounds Close: deregistration, draining streams and the HTTP
	// servers. Default 5s.
	StopTimeout time.Duration
	// Log receives the plane's logs. Default: discarded.
	Log *slog.Logger
}

// WithDefaults returns c with every unset field that has a default set.
func (c RunConfig) WithDefaults() RunConfig {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.ConsulAddress, "127.0.0.1:8500")
	def(&c.XDSAddress, "127.0.0.1:18000")
	def(&c.AdminAddress, "127.0.0.1:18001")
	def(&c.PublicAddress, "127.0.0.1:18002")
	def(&c.FiltersDir, "bin/filters")
	def(&c.PolicyStore, "consul")
	def(&c.PolicyKVPrefix, policystore.DefaultPrefix)
	if c.Debounce <= 0 {
		c.Debounce = 20 * time.Millisecond
	}
	if c.AuthTTL <= 0 {
		c.AuthTTL = 10 * time.Second
	}
	if c.AuthGrace <= 0 {
		c.AuthGrace = 5 * time.Minute
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports a configuration the plane cannot run with, saying which
// flag to change. It reads nothing but c.
func (c RunConfig) Validate() error {
	if c.LoadPolicies == nil {
		return errors.New("controlplane: RunConfig.LoadPolicies is nil: pass a policy loader (policies.LoadFiles)")
	}
	for _, hp := range []struct{ flag, v string }{{"--audit-collector", c.AuditCollector}, {"--otlp-endpoint", c.OTLPEndpoint}} {
		if hp.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(hp.v); err != nil {
			return fmt.Errorf("%s %q: give host:port, e.g. 127.0.0.1:4318: %w", hp.flag, hp.v, err)
		}
	}
	if c.InsecureDev {
		for _, a := range []struct{ flag, v string }{{"--xds-address", c.XDSAddress}, {"--admin-addr", c.AdminAddress}, {"--public-addr", c.PublicAddress}} {
			if !IsLoopback(a.v) {
				return fmt.Errorf("--insecure-dev serves anonymous plaintext and is refused on %s %s: listen on 127.0.0.1 or drop --insecure-dev", a.flag, a.v)
			}
		}
	}
	switch c.PolicyStore {
	case "consul", "memory":
	default:
		return fmt.Errorf("--policy-store %q: give consul (shared by replicas) or memory", c.PolicyStore)
	}
	return nil
}

// IsLoopback reports whether a listen address is on a loopback interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Process is a running control plane: the Server, its ADS, admin and public
// listeners, its certificates and its Consul registration. Start makes one;
// Close (or Shutdown) stops it.
type Process struct {
	cfg     RunConfig
	log     *slog.Logger
	client  *api.Client
	authn   *auth.Authenticator
	certs   *certs.Manager
	mods    *moduleserver.Server
	plane   *Server
	reg     *prometheus.Registry
	baseCtx context.Context // Start's ctx without its cancellation, for Close

	xdsLis, adminLis, publicLis net.Listener
	grpc                        *grpc.Server
	admin, public               *http.Server
	adminTLS                    *tls.Config
	registration                *Registration

	cancel       context.CancelFunc // stops the Server and the certificates manager
	bg           sync.WaitGroup
	errc         chan error
	shutdownOnce sync.Once
	shutdownErr  error
}

// Run starts the plane, serves until ctx ends or a server fails, then stops
// it gracefully. It returns the failure, if any.
func Run(ctx context.Context, cfg RunConfig) error {
	return lifecycle.Run(ctx, func(ctx context.Context) (*Process, error) { return Start(ctx, cfg) })
}

// Start applies cfg's defaults, validates it, connects to Consul, binds the
// listeners and starts serving in the background. The plane runs until
// Shutdown or Close (or until ctx ends). On error nothing is left running.
func Start(ctx context.Context, cfg RunConfig) (_ *Process, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Process{cfg: cfg, log: cfg.Log, baseCtx: context.WithoutCancel(ctx), errc: make(chan error, 4)}
	ctx, p.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	steps := []func(context.Context) error{p.connectConsul, p.listen, p.newServer, p.serverTLS}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	p.serve(ctx)
	p.register(ctx)
	return p, nil
}

// connectConsul makes the Consul client and, unless InsecureDev, checks
// that Consul's ACL system is on and the plane's own token is valid.
func (p *Process) connectConsul(ctx context.Context) error {
	cc := api.DefaultConfig()
	cc.Address = p.cfg.ConsulAddress
	if f := p.cfg.ConsulTokenFile; f != "" {
		cc.TokenFile = f
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("--consul-token-file: %w", err)
		}
	}
	client, err := api.NewClient(cc)
	if err != nil {
		return fmt.Errorf("--consul %q: %w", p.cfg.ConsulAddress, err)
	}
	p.client = client
	if p.cfg.InsecureDev {
		return nil
	}
	p.authn, err = auth.New(auth.Options{Consul: cc, TTL: p.cfg.AuthTTL, Grace: p.cfg.AuthGrace})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return p.authn.CheckEnabled(cctx, "") // the plane's own token, from cc
}

// listen binds the three listeners and fills the defaults that depend on
// their addresses.
func (p *Process) listen(context.Context) error {
	var err error
	for _, l := range []struct {
		flag, addr string
		lis        *net.Listener
	}{{"--xds-address", p.cfg.XDSAddress, &p.xdsLis}, {"--admin-addr", p.cfg.AdminAddress, &p.adminLis}, {"--public-addr", p.cfg.PublicAddress, &p.publicLis}} {
		if *l.lis, err = net.Listen("tcp", l.addr); err != nil {
			return fmt.Errorf("%s: %w", l.flag, err)
		}
	}
	if p.cfg.ModuleBaseURL == "" {
		p.cfg.ModuleBaseURL = "http://" + p.publicLis.Addr().String() + "/modules/"
	}
	if p.cfg.Replica == "" {
		host, _ := os.Hostname()
		p.cfg.Replica = host + "/" + p.xdsLis.Addr().String()
	}
	return nil
}

// newServer builds the Server and, where the plane needs certificates,
// starts the certificates manager.
func (p *Process) newServer(ctx context.Context) error {
	var store *policystore.Store
	if p.cfg.PolicyStore == "consul" {
		store = policystore.New(p.client, p.cfg.PolicyKVPrefix)
	}
	p.reg = prometheus.NewRegistry()
	p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.mods = moduleserver.New(p.cfg.FiltersDir, p.log)
	cfg := Config{
		Consul:       p.client,
		Modules:      p.mods,
		LoadPolicies: p.cfg.LoadPolicies,
		RecordChange: p.cfg.RecordChange,
		Rollouts:     p.cfg.Rollouts,
		Health:       p.cfg.Health,
		PolicyDir:    p.cfg.PolicyDir,
		Store:        store,
		Replica:      p.cfg.Replica,
		Debounce:     p.cfg.Debounce,
		Log:          p.log,
		Registry:     p.reg,
		Auth:         p.authn,
		// Validate refused InsecureDev off loopback.
		InsecureNoAuth: p.cfg.InsecureDev,
		Translate: translate.Options{
			ModuleBaseURL:  p.cfg.ModuleBaseURL,
			AuditCollector: p.cfg.AuditCollector,
			OTLPEndpoint:   p.cfg.OTLPEndpoint,
		},
	}
	if p.cfg.Intentions {
		cfg.Intentions = intentions.NewWatcher(p.client, p.log.With("component", "intentions"), 0)
	}
	if p.cfg.MTLS || !p.cfg.InsecureDev {
		m, err := certs.NewManager(certs.Options{Issuer: certs.NewConsulIssuer(p.client, certs.ConsulOptions{}), Logger: p.log, Registerer: p.reg})
		if err != nil {
			return err
		}
		p.certs = m
		p.bg.Add(1)
		go func() { defer p.bg.Done(); _ = m.Run(ctx) }()
	}
	if p.cfg.MTLS {
		if err := p.withMTLS(ctx, &cfg); err != nil {
			return err
		}
	}
	plane, err := NewWithContext(ctx, cfg)
	if err != nil {
		return err
	}
	p.plane = plane
	return nil
}

// withMTLS makes cfg serve Consul Connect leaves and roots over SDS, with
// the trust domain and datacenter read from Consul.
func (p *Process) withMTLS(ctx context.Context, cfg *Config) error {
	roots, _, err := p.client.Connect().CARoots((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("--mtls: read Consul Connect CA roots (is Connect enabled on the agent?): %w", err)
	}
	self, err := p.client.Agent().Self()
	if err != nil {
		return fmt.Errorf("--mtls: read the agent's datacenter: %w", err)
	}
	dc, _ := self["Config"]["Datacenter"].(string)
	issuer := certs.NewConsulIssuer(p.client, certs.ConsulOptions{})
	m := p.certs
	// The CertificatePolicy in force sets renewal and, for Consul's CA, the
	// leaf lifetime.
	cfg.OnPolicy = func(ps *ir.PolicySet) error {
		if err := m.SetPolicy(ps.Certificates); err != nil {
			return err
		}
		if ttl := ps.Certificates.LeafTTL; ttl > 0 && (ps.Certificates.Issuer == "" || ps.Certificates.Issuer == "consul") {
			return issuer.SetLeafTTL(ctx, ttl)
		}
		return nil
	}
	cfg.Secrets = m
	cfg.Translate.TrustDomain, cfg.Translate.Datacenter = roots.TrustDomain, dc
	return nil
}

// serverTLS waits for the plane's own Connect leaf and makes the TLS
// configurations of ADS and the admin API (nothing under InsecureDev).
func (p *Process) serverTLS(ctx context.Context) error {
	var grpcOpts []grpc.ServerOption
	if p.cfg.InsecureDev {
		p.log.Warn("INSECURE DEVELOPMENT MODE: xDS and the admin API are plaintext and anonymous; anyone who reaches " + p.xdsLis.Addr().String() + " gets every proxy's configuration and secrets. Never run this outside a laptop.")
	} else {
		// The plane's own identity: its Connect leaf, renewed by the manager
		// and served from the next handshake on.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := p.certs.Wait(wctx, meshnames.PlaneServiceName)
		cancel()
		if err != nil {
			return fmt.Errorf("the plane's own certificate (Consul Connect leaf for %s): %w; its token needs service:write on %s", meshnames.PlaneServiceName, err, meshnames.PlaneServiceName)
		}
		// A client certificate is optional (tokens are the usual
		// credential); one that is sent must chain to the mesh CA.
		xdsTLS := p.certs.OptionalClientTLSConfig(meshnames.PlaneServiceName)
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(xdsTLS)))
		p.adminTLS = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: p.certs.GetCertificate(meshnames.PlaneServiceName)}
	}
	p.grpc = grpc.NewServer(append(grpcOpts, p.plane.GRPCServerOptions()...)...)
	p.plane.Register(p.grpc)
	return nil
}

// serve starts the Server's watch loop and the three servers.
func (p *Process) serve(ctx context.Context) {
	p.admin = &http.Server{Handler: p.plane.AdminHandler(p.cfg.MetricsPublic), ReadHeaderTimeout: 10 * time.Second, TLSConfig: p.adminTLS}
	p.public = &http.Server{Handler: p.plane.PublicHandler(p.mods, p.cfg.MetricsPublic), ReadHeaderTimeout: 10 * time.Second}
	p.bg.Add(4)
	go func() { defer p.bg.Done(); p.fail(p.plane.Run(ctx)) }()
	go func() { defer p.bg.Done(); p.fail(p.grpc.Serve(p.xdsLis)) }()
	go func() {
		defer p.bg.Done()
		if p.adminTLS != nil {
			p.fail(p.admin.ServeTLS(p.adminLis, "", ""))
			return
		}
		p.fail(p.admin.Serve(p.adminLis))
	}()
	go func() { defer p.bg.Done(); p.fail(p.public.Serve(p.publicLis)) }()
	p.log.Info("control plane serving", "xds", p.xdsLis.Addr().String(), "admin", p.adminLis.Addr().String(),
		"public", p.publicLis.Addr().String(), "consul", p.cfg.ConsulAddress, "modules", p.cfg.ModuleBaseURL,
		"policy_dir", p.cfg.PolicyDir, "mtls", p.cfg.MTLS, "authenticated", !p.cfg.InsecureDev)
}

// fail reports a server's failure to Run; a server closed by Shutdown and a
// cancelled watch loop are not failures.
func (p *Process) fail(err error) {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) || errors.Is(err, grpc.ErrServerStopped) {
		return
	}
	select {
	case p.errc <- err:
	default:
	}
}

// register registers the plane in Consul when Register is set; a failure is
// logged and the plane serves anyway.
func (p *Process) register(ctx context.Context) {
	if !p.cfg.Register {
		return
	}
	r, err := RegisterInConsul(ctx, p.client, p.xdsLis.Addr().String(), p.adminLis.Addr().String(), p.publicLis.Addr().String())
	if err != nil {
		p.log.Warn("could not register in Consul; serving anyway", "err", err)
		return
	}
	p.registration = r
}

// Server returns the running Server.
func (p *Process) Server() *Server { return p.plane }

// XDSAddr, AdminAddr and PublicAddr return the bound listen addresses.
func (p *Process) XDSAddr() net.Addr { return p.xdsLis.Addr() }

// AdminAddr returns the admin API's bound address.
func (p *Process) AdminAddr() net.Addr { return p.adminLis.Addr() }

// PublicAddr returns the public (probes, modules) server's bound address.
func (p *Process) PublicAddr() net.Addr { return p.publicLis.Addr() }

// Err reports a server's failure while the plane runs (at most one).
func (p *Process) Err() <-chan error { return p.errc }

// Shutdown stops the plane gracefully: it deregisters from Consul, stops the
// watch loop, lets ADS streams and HTTP requests end (bounded by ctx), and
// closes the listeners. Later calls return the first call's result.
func (p *Process) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() { p.shutdownErr = p.shutdown(ctx) })
	return p.shutdownErr
}

// Close is Shutdown bounded by StopTimeout.
func (p *Process) Close() error {
	ctx, cancel := context.WithTimeout(p.baseCtx, p.cfg.StopTimeout)
	defer cancel()
	return p.Shutdown(ctx)
}

func (p *Process) shutdown(ctx context.Context) error {
	p.log.Info("control plane stopping")
	var errs []error
	if p.registration != nil {
		if err := p.registration.Deregister(ctx); err != nil {
			p.log.Warn("deregister failed", "err", err)
		}
	}
	p.cancel()
	stopped := make(chan struct{})
	go func() { p.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		p.grpc.Stop()
	}
	for _, srv := range []*http.Server{p.admin, p.public} {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			_ = srv.Close()
		}
	}
	p.release()
	return errors.Join(errs...)
}

// release stops what Start started and closes the listeners; it is what a
// failed Start and Shutdown have in common.
func (p *Process) release() {
	p.cancel()
	if p.grpc != nil {
		p.grpc.Stop()
	}
	for _, l := range []net.Listener{p.xdsLis, p.adminLis, p.publicLis} {
		if l != nil {
			_ = l.Close()
		}
	}
	p.bg.Wait()
}

// The certificates manager serves SDS secrets to the plane directly.
var _ SecretSource = (*certs.Manager)(nil)

var _ lifecycle.Service = (*Process)(nil)
