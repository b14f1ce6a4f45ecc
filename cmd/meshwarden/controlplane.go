package main

import (
	"context"
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

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/certs"
	"github.com/meshwarden/meshwarden/controlplane/modules"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/ir"
	"github.com/meshwarden/meshwarden/policies"
)

type controlPlaneFlags struct {
	consul, xdsAddr, adminAddr, policyDir, filtersDir, moduleBaseURL string
	auditCollector, otlpEndpoint                                     string
	debounce                                                         time.Duration
	register, mtls, verbose                                          bool
	changelog, changelogKey                                          string
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

Admin API (--admin-addr):
  GET  /metrics /healthz /readyz
  GET  /v1/status                       consul index, staleness, policy revision, last rejection
  GET  /v1/nodes                        connected proxies
  GET  /v1/config_dump?node=ID          a proxy's resources as YAML
  POST /v1/policies:translate           {"file.yaml": "..."} -> per-node resources, nothing applied
  POST /v1/policies:apply               same body; applied whole or rejected whole
  GET  /modules/ , /modules/<sha256>    the filter modules (unless --module-base-url points elsewhere)`,
		Example: `  # Against a local Consul agent, with the policies and filters of this repo:
  meshwarden controlplane --consul 127.0.0.1:8500 --policy-dir policies/examples

  # What does a proxy get?
  curl -s 127.0.0.1:18001/v1/nodes
  curl -s '127.0.0.1:18001/v1/config_dump?node=web-1'

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
	fl.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:18001", "HTTP listen address of /metrics, /healthz, /readyz, /v1/* and /modules/")
	fl.StringVar(&f.policyDir, "policy-dir", "", "directory of policy files, reloaded on change (~1s); empty: policies only via POST /v1/policies:apply")
	fl.StringVar(&f.filtersDir, "filters-dir", envOr("MESHWARDEN_FILTERS_DIR", "bin/filters"), "directory of built <name>.wasm filters served by sha256 (rescanned on change; make filters)")
	fl.StringVar(&f.moduleBaseURL, "module-base-url", "", "URL proxies fetch modules from, sha256 appended (default http://<admin-addr>/modules/)")
	fl.StringVar(&f.auditCollector, "audit-collector", "", "host:port of the audit collector for cluster "+ir.AuditClusterName+" (default: Consul service "+ir.CollectorServiceName+")")
	fl.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "host:port of the OTLP/HTTP collector for cluster "+ir.OTLPClusterName+" (empty: no cluster)")
	fl.DurationVar(&f.debounce, "debounce", 20*time.Millisecond, "quiet time that coalesces bursts of changes before snapshots are rebuilt (bursts cut at 5x)")
	fl.BoolVar(&f.register, "register", true, "register the plane in Consul as "+ir.PlaneServiceName+" with a /healthz check (deregistered on stop)")
	fl.BoolVar(&f.mtls, "mtls", false, "serve leaf certificates and roots from Consul Connect's CA over SDS; inbound listeners require client certificates, upstreams check SPIFFE ids")
	fl.BoolVar(&f.verbose, "verbose", false, "debug logging")
	fl.StringVar(&f.changelog, "changelog", defaultChangeLog(), "hash-chained log recording every applied policy set (who, when, revision, diff); read it with `meshwarden policy log --changelog FILE`; --changelog= disables")
	fl.StringVar(&f.changelogKey, "changelog-key", "", "Ed25519 private key `file` (PEM, 'meshwarden audit keygen') that signs a checkpoint of the change log after every change; verify with `meshwarden policy log --pubkey`")
	return cmd
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
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	for name, hp := range map[string]string{"--audit-collector": f.auditCollector, "--otlp-endpoint": f.otlpEndpoint} {
		if hp == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return fmt.Errorf("%s %q: give host:port, e.g. 127.0.0.1:4318: %w", name, hp, err)
		}
	}
	cc := api.DefaultConfig()
	cc.Address = f.consul
	client, err := api.NewClient(cc)
	if err != nil {
		return fmt.Errorf("--consul %q: %w", f.consul, err)
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
	if f.moduleBaseURL == "" {
		f.moduleBaseURL = "http://" + adminLis.Addr().String() + "/modules/"
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mods := modules.New(f.filtersDir, log)
	cfg := controlplane.Config{
		Consul:       client,
		Modules:      mods,
		LoadPolicies: loadPolicies,
		PolicyDir:    f.policyDir,
		Debounce:     f.debounce,
		Log:          log,
		Registry:     reg,
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
		m, err := certs.NewManager(certs.Options{Issuer: issuer, Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
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
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.Run(ctx) }()
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

	g := grpc.NewServer()
	plane.Register(g)
	admin := &http.Server{Handler: plane.AdminHandler(mods), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 3)
	wg.Add(3)
	go func() { defer wg.Done(); errc <- plane.Run(ctx) }()
	go func() { defer wg.Done(); errc <- g.Serve(xdsLis) }()
	go func() {
		defer wg.Done()
		if err := admin.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	log.Info("control plane serving", "xds", xdsLis.Addr().String(), "admin", adminLis.Addr().String(),
		"consul", f.consul, "modules", f.moduleBaseURL, "policy_dir", f.policyDir, "mtls", f.mtls)

	var registration *controlplane.Registration
	if f.register {
		registration, err = controlplane.RegisterInConsul(ctx, client, xdsLis.Addr().String(), adminLis.Addr().String())
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
	return runErr
}
