package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/internal/exitcode"
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
	prometheusURL, rolloutKVPrefix                                   string
	rollouts                                                         bool
	healthScrape                                                     []string
	healthInterval, healthFast                                       time.Duration
	healthThreshold                                                  float64
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
  xDS (--xds-address) is served over TLS with the plane's Consul Connect leaf
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
  GET  /v1/health                       operator:read  subset health scores (with --health-scrape)
  GET  /metrics                         operator:read  (or anonymous with --metrics-public)
  GET  /v1/config_dump?node=ID          mesh:read      a proxy's resources as YAML, keys redacted
  POST /v1/policies:translate           mesh:read      {"file.yaml": "..."} -> per-node resources
  POST /v1/policies:apply               mesh:write     applied whole or rejected whole; the change
                                                       log records the token's accessor id
  GET  /v1/rollouts                     operator:read  every Rollout's phase, step, weight, decisions
  POST /v1/rollouts/NAME/promote|abort  mesh:write     approve / resume / abort (meshwarden rollout)
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

Rollouts: the plane runs every Rollout policy in force, analysing each step
with PromQL against --prometheus-url (without it every analysis is
inconclusive and rollouts pause, saying so). Their state lives in Consul KV
(--rollout-kv-prefix), so a restarted plane resumes them; every decision is
logged, counted and appended, with its evidence, to --changelog.

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
	fl.StringVar(&f.xdsAddr, "xds-address", "127.0.0.1:18000", "gRPC listen address of the ADS server (what envoy.yaml points at)")
	fl.StringVar(&f.xdsAddr, "xds-addr", "127.0.0.1:18000", "deprecated spelling of --xds-address")
	_ = fl.MarkDeprecated("xds-addr", "use --xds-address")
	fl.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:18001", "HTTPS listen address of the authenticated admin API (/v1/*, /metrics)")
	fl.StringVar(&f.publicAddr, "public-addr", "127.0.0.1:18002", "plain HTTP listen address of /healthz, /readyz and /modules/ (anonymous by design)")
	fl.StringVar(&f.consulTokenFile, "consul-token-file", "", "file holding the plane's own Consul ACL token (default $CONSUL_HTTP_TOKEN)")
	fl.DurationVar(&f.authTTL, "auth-ttl", 10*time.Second, "how long a token decision is reused; a revoked token loses its xDS streams within this bound")
	fl.DurationVar(&f.authGrace, "auth-grace", 5*time.Minute, "how long existing streams keep their last decision while Consul's ACL endpoints are unreachable")
	fl.BoolVar(&f.insecureDev, "insecure-dev", false, "DEVELOPMENT ONLY: plaintext xDS and admin API, no authentication; refused unless every listen address is loopback")
	fl.StringVar(&f.policyStore, "policy-store", "consul", "where the applied policy set lives: consul (KV under --policy-kv-prefix, shared by every replica; applies are check-and-set) or memory (this process only)")
	fl.StringVar(&f.policyKVPrefix, "policy-kv-prefix", policystore.DefaultPrefix, "Consul KV prefix of the policy store (current set and hash-chained history)")
	fl.StringVar(&f.replica, "replica", "", "this replica's name in the policy store's records (default <hostname>/<xds-address>)")
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
	fl.StringVar(&f.prometheusURL, "prometheus-url", os.Getenv("MESHWARDEN_PROMETHEUS_URL"), "Prometheus server the Rollout policies' analyses query, e.g. http://127.0.0.1:9090 ($MESHWARDEN_PROMETHEUS_URL); empty: every analysis is inconclusive, so rollouts pause and say why")
	fl.BoolVar(&f.rollouts, "rollouts", true, "run the Rollout policies of the set in force (meshwarden rollout status|promote|abort|history)")
	fl.StringVar(&f.rolloutKVPrefix, "rollout-kv-prefix", controlplane.DefaultRolloutPrefix, "Consul KV prefix of the rollouts' state (a restarted plane or another replica resumes from it)")
	fl.StringArrayVar(&f.healthScrape, "health-scrape", nil, "a proxy's Prometheus /metrics `URL` to score subset health from (repeat per gateway), e.g. http://127.0.0.1:9901/metrics; see 'meshwarden health --help'")
	fl.DurationVar(&f.healthInterval, "health-interval", 15*time.Second, "health scrape interval while every subset scores at or above --health-threshold")
	fl.DurationVar(&f.healthFast, "health-fast-interval", 0, "health scrape interval while a subset is unhealthy (adaptive probing; default --health-interval/4)")
	fl.Float64Var(&f.healthThreshold, "health-threshold", 0.7, "score (0-1) below which a subset is unhealthy")
	f.logs.register(fl)
	fl.StringVar(&f.changelog, "changelog", defaultChangeLog(), "hash-chained log `file` recording every applied policy set (who, when, revision, diff); read it with 'meshwarden policy log --changelog FILE'; --changelog= disables")
	fl.StringVar(&f.changelogKey, "changelog-key", "", "Ed25519 private key `file` (PEM, 'meshwarden audit keygen') that signs a checkpoint of the change log after every change; verify with `meshwarden policy log --pubkey`")
	return cmd
}

// filesDiff is the unified diff of two policy sets, file by file.
func filesDiff(before, after map[string][]byte) string {
	sorted := slices.Concat(slices.Collect(maps.Keys(before)), slices.Collect(maps.Keys(after)))
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
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

// isLoopback reports whether a listen address is on a loopback interface.
func isLoopback(addr string) bool { return controlplane.IsLoopback(addr) }

func runControlPlane(ctx context.Context, f controlPlaneFlags) error {
	log, err := f.logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg := controlplane.RunConfig{
		ConsulAddress: f.consul, ConsulTokenFile: f.consulTokenFile,
		XDSAddress: f.xdsAddr, AdminAddress: f.adminAddr, PublicAddress: f.publicAddr,
		FiltersDir: f.filtersDir, ModuleBaseURL: f.moduleBaseURL,
		PolicyDir: f.policyDir, LoadPolicies: policies.LoadSet,
		AuditCollector: f.auditCollector, OTLPEndpoint: f.otlpEndpoint,
		Debounce: f.debounce, Register: f.register, Intentions: f.intentions, MTLS: f.mtls,
		InsecureDev: f.insecureDev, MetricsPublic: f.metricsPublic,
		AuthTTL: f.authTTL, AuthGrace: f.authGrace,
		PolicyStore: f.policyStore, PolicyKVPrefix: f.policyKVPrefix, Replica: f.replica,
		Health: health.Config{Targets: f.healthScrape, Interval: f.healthInterval, FastInterval: f.healthFast, Threshold: f.healthThreshold},
		Log:    log,
	}
	if err := checkHealthFlags(f); err != nil {
		return exitcode.Usagef("%v", err)
	}
	// Refuse a bad configuration before the change log is created.
	if err := cfg.WithDefaults().Validate(); err != nil {
		return err
	}
	cl, err := openChangeLog(f.changelog, f.changelogKey)
	if err != nil {
		return err
	}
	if cl != nil {
		cfg.RecordChange = changeRecorder(cl)
	}
	if err := rolloutConfig(&cfg, f, cl); err != nil {
		return err
	}
	return controlplane.Run(ctx, cfg)
}

// openChangeLog opens the policy change log at path (none when path is
// empty), signing a checkpoint after every change with the key in keyFile
// when it is set.
func openChangeLog(path, keyFile string) (*policies.ChangeLog, error) {
	if path == "" {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--changelog: %w", err)
	}
	cl, err := policies.OpenChangeLog(path)
	if err != nil {
		return nil, fmt.Errorf("--changelog: %w", err)
	}
	if keyFile != "" {
		k, err := wal.LoadPrivateKey(keyFile)
		if err != nil {
			return nil, fmt.Errorf("--changelog-key: %w", err)
		}
		cl.SetSigner(k)
	}
	return cl, nil
}

// changeRecorder is the plane's RecordChange hook: every applied policy set
// appended to cl with who applied it.
func changeRecorder(cl *policies.ChangeLog) func(context.Context, controlplane.PolicyChange) error {
	return func(ctx context.Context, c controlplane.PolicyChange) error {
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

// checkHealthFlags refuses health settings that could not work.
func checkHealthFlags(f controlPlaneFlags) error {
	for _, u := range f.healthScrape {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("--health-scrape %q: give an http(s) URL of a proxy's metrics, e.g. http://127.0.0.1:9901/metrics", u)
		}
	}
	if f.healthThreshold <= 0 || f.healthThreshold > 1 {
		return fmt.Errorf("--health-threshold %g: give a score between 0 and 1, e.g. 0.7", f.healthThreshold)
	}
	if f.healthInterval < 100*time.Millisecond || f.healthFast < 0 || f.healthFast > f.healthInterval {
		return fmt.Errorf("--health-interval %s / --health-fast-interval %s: the interval must be at least 100ms and the fast one no longer", f.healthInterval, f.healthFast)
	}
	return nil
}
