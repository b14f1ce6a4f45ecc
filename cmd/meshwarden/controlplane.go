package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/certs"
	"github.com/meshwarden/meshwarden/controlplane/intentions"
	"github.com/meshwarden/meshwarden/controlplane/moduleserver"
	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

type controlPlaneFlags struct {
	consul, xdsAddr, adminAddr, policyDir, filtersDir, moduleBaseURL string
	auditCollector, otlpEndpoint                                     string
	debounce                                                         time.Duration
	register, mtls, intentions                                       bool
	logs                                                             logFlags
	changelog, changelogKey                                          string
	consulTokenFile, publicAddr                                      string
	insecureDev, metricsPublic                                       bool
	authTTL, authGrace                                               time.Duration
	policyStore, policyKVPrefix, replica                             string
}

func newControlPlaneCmd() *cobra.Command {
	var f controlPlaneFlags
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Serve xDS (ADS) to Envoy sidecars and gateways from Consul and policy files",
		Long: `The control plane watches Consul (services, health, tags/meta) and the policy
files, translates both into Envoy configuration per proxy, and serves it over
ADS (gRPC, state-of-the-world and delta): listeners, routes, clusters,
endpoints, SDS secrets and the Wasm filters by ECDS. It also serves the built
.wasm filters by sha256 and an admin API.

How proxies are recognised (from their bootstrap, see envoy.yaml):
  node.cluster = meshwarden-gateway   a gateway (listener port: metadata listen_port)
  node.cluster = <service>            a sidecar of <service>; metadata may set
                                      inbound_port (21000), outbound_port (15001),
                                      local_app_port (8080)

What is never served: a configuration that fails Envoy's own validation or
is inconsistent; a policy set with any error (the last good one keeps
serving); a snapshot a proxy rejected (NACK: it is put back on its last good
snapshot, and the rejection is logged, counted and shown in /v1/status).
During a Consul outage the last catalog keeps serving and /v1/status and the
metric meshwarden_controlplane_consul_staleness_seconds show how stale it is.

Who may talk to the plane (Consul's ACL system decides; it must be on):
  xDS (--xds-addr) is served over TLS with the plane's Consul Connect leaf
  (service meshwarden-controlplane). Every stream authenticates with a Consul
  ACL token in gRPC metadata x-consul-token (or a mesh client certificate),
  and may act only as a service its token holds service:write on: it gets
  that service's leaf and the trust bundle, nothing else. Tokens are
  re-checked every --auth-ttl; a revoked one closes its streams. While Consul
  is unreachable, existing streams keep their last decision for --auth-grace
  and new ones are refused.
  The plane's own token (CONSUL_HTTP_TOKEN or --consul-token-file) needs
  service:write on every proxied service (it fetches their leaves), read on
  nodes and services, and operator:write for a CertificatePolicy's leafTTL.

Admin API (--admin-addr, HTTPS, token in X-Consul-Token or Authorization: Bearer):
  GET  /v1/status                       operator:read  consul index, staleness, revision, last rejection
  GET  /v1/nodes                        operator:read  connected proxies
  GET  /metrics                         operator:read  (or anonymous with --metrics-public)
  GET  /v1/config_dump?node=ID          mesh:read      a proxy's resources as YAML, keys redacted
  POST /v1/policies:translate           mesh:read      {"file.yaml": "..."} -> per-node resources
  POST /v1/policies:apply               mesh:write     applied whole or rejected whole; the change
                                                       log records the token's accessor id
Public (--public-addr, plain HTTP, anonymous by design):
  GET  /healthz /readyz                 probes
  GET  /modules/ , /modules/<sha256>    the filter modules; proxies check the sha256 pinned in
                                        their authenticated configuration before loading one

Replicas: run any number of planes against the same Consul. With
--policy-store=consul (the default) the applied policy set lives in Consul KV
(--policy-kv-prefix): an apply on any replica is a check-and-set there, every
replica watches it and serves the same snapshots (content-hash versions are
equal), and the history of every applied set is kept, hash-chained, under
<prefix>/history/. Two applies racing: one wins, the other gets 409 with the
revision in force. Proxies list several plane addresses (gateway:
--xds-address a,b; envoy.yaml: several endpoints) and fail over.

--insecure-dev turns all of this off (plaintext, anonymous) for development
on loopback only; the plane logs a warning at start.`,
		Example: `  # Against a local Consul agent, with the policies and filters of this repo:
  meshwarden controlplane --consul 127.0.0.1:8500 --policy-dir policies/examples

  # What does a proxy get? (the CA file: the Connect roots, e.g. from
  # curl -s 127.0.0.1:8500/v1/agent/connect/ca/roots)
  curl -s --cacert connect-ca.pem -H "X-Consul-Token: $TOKEN" https://127.0.0.1:18001/v1/nodes
  meshwarden policy status --plane https://127.0.0.1:18001 --ca-file connect-ca.pem --token-file ops.token

  # With mTLS from Consul Connect's CA (leaf + roots over SDS):
  meshwarden controlplane --mtls`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runControlPlane(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.consul, "consul", envOr("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), "Consul agent HTTP address (host:port or URL; $CONSUL_HTTP_ADDR)")
	fl.StringVar(&f.xdsAddr, "xds-addr", "127.0.0.1:18000", "gRPC listen address of the ADS server (what envoy.yaml points at)")
	fl.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:18001", "HTTPS listen address of the authenticated admin API (/v1/*, /metrics)")
	fl.StringVar(&f.publicAddr, "public-addr", "127.0.0.1:18002", "plain HTTP listen address of /healthz, /readyz and /modules/ (anonymous by design)")
	fl.StringVar(&f.consulTokenFile, "consul-token-file", "", "file holding the plane's own Consul ACL token (default $CONSUL_HTTP_TOKEN)")
	fl.DurationVar(&f.authTTL, "auth-ttl", 10*time.Second, "how long a token decision is reused; a revoked token loses its xDS streams within this bound")
	fl.DurationVar(&f.authGrace, "auth-grace", 5*time.Minute, "how long existing streams keep their last decision while Consul's ACL endpoints are unreachable")
	fl.BoolVar(&f.insecureDev, "insecure-dev", false, "DEVELOPMENT ONLY: plaintext xDS and admin API, no authentication; refused unless every listen address is loopback")
	fl.StringVar(&f.policyStore, "policy-store", "consul", "where the applied policy set lives: consul (KV under --policy-kv-prefix, shared by every replica; applies are check-and-set) or memory (this process only)")
	fl.StringVar(&f.policyKVPrefix, "policy-kv-prefix", policystore.DefaultPrefix, "Consul KV prefix of the policy store (current set and hash-chained history)")
	fl.StringVar(&f.replica, "replica", "", "this replica's name in the policy store's records (default <hostname>/<xds-addr>)")
	fl.BoolVar(&f.metricsPublic, "metrics-public", false, "serve /metrics anonymously (on --public-addr too) instead of requiring operator:read")
	fl.StringVar(&f.policyDir, "policy-dir", "", "directory of policy files, reloaded on change (~1s); empty: policies only via POST /v1/policies:apply")
	fl.StringVar(&f.filtersDir, "filters-dir", envOr("MESHWARDEN_FILTERS_DIR", "bin/filters"), "directory of built <name>.wasm filters served by sha256 (rescanned on change; make filters)")
	fl.StringVar(&f.moduleBaseURL, "module-base-url", "", "URL proxies fetch modules from, sha256 appended (default http://<public-addr>/modules/)")
	fl.StringVar(&f.auditCollector, "audit-collector", "", "host:port of the audit collector for cluster "+meshnames.AuditClusterName+" (default: Consul service "+meshnames.CollectorServiceName+")")
	fl.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "host:port of the OTLP/HTTP collector for cluster "+meshnames.OTLPClusterName+" (empty: no cluster)")
	fl.DurationVar(&f.debounce, "debounce", 20*time.Millisecond, "quiet time that coalesces bursts of changes before snapshots are rebuilt (bursts cut at 5x)")
	fl.BoolVar(&f.register, "register", true, "register the plane in Consul as "+meshnames.PlaneServiceName+" with a /healthz check (deregistered on stop)")
	fl.BoolVar(&f.intentions, "intentions", true, "enforce Consul intentions (config entries service-intentions, watched) as access policy for services without an AccessPolicy document; /v1/status shows their staleness")
	fl.BoolVar(&f.mtls, "mtls", false, "serve leaf certificates and roots from Consul Connect's CA over SDS; inbound listeners require client certificates, upstreams check SPIFFE ids")
	f.logs.register(fl)
	fl.StringVar(&f.changelog, "changelog", defaultChangeLog(), "hash-chained log recording every applied policy set (who, when, revision, diff); read it with 'meshwarden policy log --changelog FILE'; --changelog= disables")
	fl.StringVar(&f.changelogKey, "changelog-key", "", "Ed25519 private key `file` (PEM, 'meshwarden audit keygen') that signs a checkpoint of the change log after every change; verify with `meshwarden policy log --pubkey`")
	return cmd
}

func intentionsWatcher(on bool, client *api.Client, log *slog.Logger) *intentions.Watcher {
	if !on {
		return nil
	}
	return intentions.NewWatcher(client, log.With("component", "intentions"), 0)
}

// filesDiff is the unified diff of two policy sets, file by file.
func filesDiff(before, after map[string][]byte) string {
	names := map[string]bool{}
	for n := range before {
		names[n] = true
	}
	for n := range after {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var b strings.Builder
	for _, n := range sorted {
		b.WriteString(policies.UnifiedDiff("a/"+n, "b/"+n, string(before[n]), string(after[n])))
	}
	return b.String()
}

// isLoopback reports whether a listen address is on a loopback interface.
func isLoopback(addr string) bool {
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

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// loadPolicies adapts policies.LoadFiles to the plane's loader.
func loadPolicies(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, error) {
	ps, diags, err := policies.LoadFiles(files, cat)
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return ps, nil
}

// The certificates manager serves SDS secrets to the plane directly.
var _ controlplane.SecretSource = (*certs.Manager)(nil)

func runControlPlane(ctx context.Context, f controlPlaneFlags) error {
	log, err := f.logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	for name, hp := range map[string]string{"--audit-collector": f.auditCollector, "--otlp-endpoint": f.otlpEndpoint} {
		if hp == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return fmt.Errorf("%s %q: give host:port, e.g. 127.0.0.1:4318: %w", name, hp, err)
		}
	}
	if f.insecureDev {
		for name, addr := range map[string]string{"--xds-addr": f.xdsAddr, "--admin-addr": f.adminAddr, "--public-addr": f.publicAddr} {
			if !isLoopback(addr) {
				return fmt.Errorf("--insecure-dev serves anonymous plaintext and is refused on %s %s: listen on 127.0.0.1 or drop --insecure-dev", name, addr)
			}
		}
	}
	cc := api.DefaultConfig()
	cc.Address = f.consul
	if f.consulTokenFile != "" {
		cc.TokenFile = f.consulTokenFile
		if _, err := os.Stat(f.consulTokenFile); err != nil {
			return fmt.Errorf("--consul-token-file: %w", err)
		}
	}
	client, err := api.NewClient(cc)
	if err != nil {
		return fmt.Errorf("--consul %q: %w", f.consul, err)
	}
	var authn *auth.Authenticator
	if !f.insecureDev {
		authn, err = auth.New(auth.Options{Consul: cc, TTL: f.authTTL, Grace: f.authGrace})
		if err != nil {
			return err
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		err = authn.CheckEnabled(cctx, "") // the plane's own token, from cc
		ccancel()
		if err != nil {
			return err
		}
	}
	xdsLis, err := net.Listen("tcp", f.xdsAddr)
	if err != nil {
		return fmt.Errorf("--xds-addr: %w", err)
	}
	defer xdsLis.Close()
	adminLis, err := net.Listen("tcp", f.adminAddr)
	if err != nil {
		return fmt.Errorf("--admin-addr: %w", err)
	}
	defer adminLis.Close()
	publicLis, err := net.Listen("tcp", f.publicAddr)
	if err != nil {
		return fmt.Errorf("--public-addr: %w", err)
	}
	defer publicLis.Close()
	if f.moduleBaseURL == "" {
		f.moduleBaseURL = "http://" + publicLis.Addr().String() + "/modules/"
	}

	if f.replica == "" {
		host, _ := os.Hostname()
		f.replica = host + "/" + xdsLis.Addr().String()
	}
	var store *policystore.Store
	switch f.policyStore {
	case "consul":
		store = policystore.New(client, f.policyKVPrefix)
	case "memory":
	default:
		return fmt.Errorf("--policy-store %q: give consul (shared by replicas) or memory", f.policyStore)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mods := moduleserver.New(f.filtersDir, log)
	cfg := controlplane.Config{
		Consul:       client,
		Modules:      mods,
		LoadPolicies: loadPolicies,
		PolicyDir:    f.policyDir,
		Store:        store,
		Replica:      f.replica,
		Debounce:     f.debounce,
		Log:          log,
		Registry:     reg,
		Auth:         authn,
		// --insecure-dev only: checked on loopback above.
		InsecureNoAuth: f.insecureDev,
		Intentions:     intentionsWatcher(f.intentions, client, log),
		Translate: translate.Options{
			ModuleBaseURL:  f.moduleBaseURL,
			AuditCollector: f.auditCollector,
			OTLPEndpoint:   f.otlpEndpoint,
		},
	}
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel below
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var m *certs.Manager
	if f.mtls || !f.insecureDev {
		issuer := certs.NewConsulIssuer(client, certs.ConsulOptions{})
		m, err = certs.NewManager(certs.Options{Issuer: issuer, Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.Run(ctx) }()
	}
	if f.mtls {
		roots, _, err := client.Connect().CARoots((&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("--mtls: read Consul Connect CA roots (is Connect enabled on the agent?): %w", err)
		}
		self, err := client.Agent().Self()
		if err != nil {
			return fmt.Errorf("--mtls: read the agent's datacenter: %w", err)
		}
		dc, _ := self["Config"]["Datacenter"].(string)
		issuer := certs.NewConsulIssuer(client, certs.ConsulOptions{})
		// The CertificatePolicy in force sets renewal and, for Consul's
		// CA, the leaf lifetime.
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
	}
	if f.changelog != "" {
		if err := os.MkdirAll(filepath.Dir(f.changelog), 0o755); err != nil {
			return fmt.Errorf("--changelog: %w", err)
		}
		cl, err := policies.OpenChangeLog(f.changelog)
		if err != nil {
			return fmt.Errorf("--changelog: %w", err)
		}
		if f.changelogKey != "" {
			k, err := wal.LoadPrivateKey(f.changelogKey)
			if err != nil {
				return fmt.Errorf("--changelog-key: %w", err)
			}
			cl.SetSigner(k)
		}
		cfg.RecordChange = func(ctx context.Context, c controlplane.PolicyChange) error {
			who := c.Identity
			if who == "" {
				who = "controlplane"
				if u, err := user.Current(); err == nil {
					who += " (os user " + u.Username + ")"
				}
			}
			_, err := cl.Append(ctx, policies.Change{Identity: who, Time: time.Now(), Revision: c.Set.Revision,
				Previous: c.Previous, Source: c.Source, Diff: filesDiff(c.Before, c.After)})
			return err
		}
	}
	plane, err := controlplane.New(cfg)
	if err != nil {
		return err
	}

	var grpcOpts []grpc.ServerOption
	adminTLS := (*tls.Config)(nil)
	if f.insecureDev {
		log.Warn("INSECURE DEVELOPMENT MODE: xDS and the admin API are plaintext and anonymous; anyone who reaches " + f.xdsAddr + " gets every proxy's configuration and secrets. Never run this outside a laptop.")
	} else {
		// The plane's own identity: its Connect leaf, renewed by the manager
		// and served from the next handshake on.
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := m.Wait(wctx, meshnames.PlaneServiceName)
		wcancel()
		if err != nil {
			return fmt.Errorf("the plane's own certificate (Consul Connect leaf for %s): %w; its token needs service:write on %s", meshnames.PlaneServiceName, err, meshnames.PlaneServiceName)
		}
		// A client certificate is optional (tokens are the usual
		// credential); one that is sent must chain to the mesh CA.
		xdsTLS := m.OptionalClientTLSConfig(meshnames.PlaneServiceName)
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(xdsTLS)))
		adminTLS = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: m.GetCertificate(meshnames.PlaneServiceName)}
	}
	g := grpc.NewServer(append(grpcOpts, plane.GRPCServerOptions()...)...)
	plane.Register(g)
	admin := &http.Server{Handler: plane.AdminHandler(f.metricsPublic), ReadHeaderTimeout: 10 * time.Second, TLSConfig: adminTLS}
	public := &http.Server{Handler: plane.PublicHandler(mods, f.metricsPublic), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 4)
	wg.Add(4)
	go func() { defer wg.Done(); errc <- plane.Run(ctx) }()
	go func() { defer wg.Done(); errc <- g.Serve(xdsLis) }()
	go func() {
		defer wg.Done()
		var err error
		if adminTLS != nil {
			err = admin.ServeTLS(adminLis, "", "")
		} else {
			err = admin.Serve(adminLis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	go func() {
		defer wg.Done()
		if err := public.Serve(publicLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	log.Info("control plane serving", "xds", xdsLis.Addr().String(), "admin", adminLis.Addr().String(),
		"public", publicLis.Addr().String(), "consul", f.consul, "modules", f.moduleBaseURL,
		"policy_dir", f.policyDir, "mtls", f.mtls, "authenticated", !f.insecureDev)

	var registration *controlplane.Registration
	if f.register {
		registration, err = controlplane.RegisterInConsul(ctx, client, xdsLis.Addr().String(), adminLis.Addr().String(), publicLis.Addr().String())
		if err != nil {
			log.Warn("could not register in Consul; serving anyway", "err", err)
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("control plane stopping")
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if registration != nil {
		if err := registration.Deregister(stopCtx); err != nil {
			log.Warn("deregister failed", "err", err)
		}
	}
	cancel()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-stopCtx.Done():
		g.Stop()
	}
	_ = admin.Shutdown(stopCtx)
	_ = public.Shutdown(stopCtx)
	return runErr
}
