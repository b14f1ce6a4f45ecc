package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/gateway"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

type gatewayFlags struct {
	xdsAddr, nodeID, listen, adminAddr, cacheDir, otlpEndpoint, service string
	drain, callTimeout                                                  time.Duration
	instances                                                           int
	maxBuffer, localAppPort                                             int
	noCallDeadline                                                      bool
	logs                                                                logFlags
	trustedSHA                                                          []string
	trustedDir                                                          string
	native, wasi                                                        string
	plane                                                               auth.ClientOptions
	adminRemote                                                         bool
	adminTokenFile                                                      string
}

func newGatewayCmd() *cobra.Command {
	var f gatewayFlags
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the edge gateway (an xDS client hosting the .wasm filters)",
		Long: `The gateway is an ADS client of the control plane: it receives listeners,
routes, clusters, endpoints, SDS secrets and the Wasm filters by ECDS, exactly
what an Envoy sidecar receives, and proxies HTTP/1.1, HTTP/2 (TLS and h2c),
gRPC and WebSocket traffic through the same .wasm filters (dye, audit, trace).

It joins the plane over TLS (the plane's certificate must chain to
--xds-ca-file and carry the SPIFFE id …/svc/meshwarden-controlplane) and
authenticates with a Consul ACL token (--token-file or $CONSUL_HTTP_TOKEN)
holding service:write on meshwarden-gateway, e.g. a token with the service
identity meshwarden-gateway:
  consul acl token create -service-identity meshwarden-gateway -description gateway

It identifies itself with node.cluster=meshwarden-gateway and node metadata
listen_port (the port of --listen). It ACKs good config, NACKs bad config with
the reason, and keeps serving the last good config while the plane is
unreachable. Filter modules are fetched from the plane's module server,
verified by sha256 and cached in --cache-dir.

Every call into a filter runs under a deadline (--wasm-call-timeout, 1s),
start-up included (_initialize, proxy_on_vm_start, proxy_on_configure): a
filter stuck in a loop fails its request instead of hanging it, and a new
module version that hangs or traps at start is refused ("timeout in
proxy_on_configure" in /config_dump .filters[].last_error and the log) while
the last good version keeps serving. New versions start in the background:
the rest of the same config (routes, clusters, rotated certificates) applies
at once. The deadline costs about 1-2 µs per call into the filter. For
modules you reviewed and built yourself, list them with --wasm-trusted-sha256
or --wasm-trusted-dir: those run without it, every other module keeps it.
/config_dump shows call_deadline per filter. --wasm-no-call-deadline drops it
for all modules.

The built-in filters run natively (--wasm-native=on, the default): when the
plane delivers a module whose sha256 is the official build of dye, audit or
trace (the reproducible output of 'make filters' for this gateway's source,
recorded in filters/official.sha256 and compiled into the gateway), the
gateway runs the same Go code linked into itself instead of the wasm, several
times faster, with the same ABI semantics (limits, properties, metrics,
callouts, ticks, shared data and queues, fail policy; a panic is a trap).
Any other module — another version, another toolchain, your own filter —
runs in wazero. /config_dump shows .filters[].runtime (native|wasm).
--wasm-native=off runs every module in wazero. A native filter cannot be
interrupted mid-call: the deadline is checked when the call returns.

Filters get exactly the WASI functions Envoy's host offers, with its answers
(--wasm-wasi=envoy, the default): the same modules run in Envoy sidecars, so a
filter that needs more (files, sockets) or that Envoy's poll_oneoff would
crash is refused or fails here first, not in production. --wasm-wasi=full
gives wazero's complete WASI, for filters that never run in Envoy.

Admin (--admin-addr, loopback only unless --admin-remote; unauthenticated like
Envoy's admin, its config dump holds no private key or token):
/healthz /readyz /metrics /config_dump; /debug/pprof/ (CPU, heap, goroutine,
mutex, block) only with Authorization: Bearer <token of --admin-token-file>.
SIGTERM or Ctrl-C drains: stop accepting, finish requests in flight (bounded
by --drain-timeout).`,
		Example: `  meshwarden gateway --xds-address 127.0.0.1:18000 --listen 127.0.0.1:10000 \
    --xds-ca-file connect-ca.pem --token-file gateway.token
  curl -s 127.0.0.1:19000/config_dump | jq '.filters[] | {name, runtime}'
  # run every filter module in wazero, even the official builds:
  meshwarden gateway --xds-ca-file connect-ca.pem --token-file gateway.token --wasm-native=off
  # run the filters built by 'make filters' without per-callback deadlines:
  meshwarden gateway --xds-ca-file connect-ca.pem --token-file gateway.token --wasm-trusted-dir bin/filters
  # inbound sidecar of service ledger (no Envoy there): mTLS + its AccessPolicy;
  # its token needs service:write on ledger:
  meshwarden gateway --service ledger --listen 0.0.0.0:21000 --local-app-port 8080 \
    --xds-ca-file connect-ca.pem --token-file ledger.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGateway(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.xdsAddr, "xds-address", "127.0.0.1:18000", "control plane ADS address (host:port), or several replicas' separated by commas: the gateway uses one and fails over to another, serving its last config meanwhile")
	fl.StringVar(&f.plane.CAFile, "xds-ca-file", os.Getenv("MESHWARDEN_XDS_CA_FILE"), "PEM roots of the mesh CA the plane's certificate must chain to (Consul Connect's roots; $MESHWARDEN_XDS_CA_FILE)")
	fl.StringVar(&f.plane.TokenFile, "token-file", os.Getenv("CONSUL_HTTP_TOKEN_FILE"), "file holding this gateway's Consul ACL token, re-read on every connect; it needs service:write on "+meshnames.GatewayNodeCluster+" ($CONSUL_HTTP_TOKEN_FILE, or the token itself in $CONSUL_HTTP_TOKEN)")
	fl.BoolVar(&f.plane.Insecure, "xds-insecure", false, "DEVELOPMENT ONLY: plaintext, anonymous xDS to a --insecure-dev plane on loopback")
	fl.StringVar(&f.nodeID, "node-id", "", "xDS node id (default gateway-<hostname>)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:10000", "proxy listen address; its port is sent as listen_port")
	fl.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:19000", "admin address, loopback only unless --admin-remote (empty disables)")
	fl.BoolVar(&f.adminRemote, "admin-remote", false, "allow --admin-addr off loopback: the admin port is unauthenticated, as Envoy's is (its config dump holds no keys or tokens); put it behind your own access control")
	fl.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the bearer token /debug/pprof/ on the admin port requires (re-read per request); empty: profiles refused")
	fl.StringVar(&f.cacheDir, "cache-dir", defaultGatewayCache(), "module and compilation cache directory")
	fl.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "OTLP/HTTP trace endpoint: host:port (plaintext) or URL (https: TLS); empty: $OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, else no spans. Headers, certificates, insecure, timeout: the standard OTEL_EXPORTER_OTLP_* variables")
	fl.DurationVar(&f.drain, "drain-timeout", 10*time.Second, "bound of the graceful drain on shutdown")
	fl.IntVar(&f.maxBuffer, "max-buffer-bytes", 1<<20, "body bytes a filter may buffer per direction")
	fl.DurationVar(&f.callTimeout, "wasm-call-timeout", time.Second, "deadline of every call into a filter module, start-up included (_initialize, proxy_on_vm_start, proxy_on_configure); a module that overruns it at start is refused and the last good version keeps serving")
	fl.IntVar(&f.instances, "wasm-instances", 0, "most instances of each filter module; requests share them, each holding one only while a filter callback runs (0: one per CPU, as Envoy runs one VM per worker). A trap fails the requests open on that instance")
	fl.BoolVar(&f.noCallDeadline, "wasm-no-call-deadline", false, "drop the per-callback deadline of the wasm host (faster; only for reviewed filters)")
	fl.StringSliceVar(&f.trustedSHA, "wasm-trusted-sha256", nil, "sha256 (hex) of a filter module to run without the per-callback deadline; repeatable")
	fl.StringVar(&f.trustedDir, "wasm-trusted-dir", "", "trust every *.wasm in this directory as --wasm-trusted-sha256 does (e.g. bin/filters)")
	fl.StringVar(&f.native, "wasm-native", "on", "on: run the official builds of the built-in filters (dye, audit, trace; sha256 in filters/official.sha256) natively, linked into the gateway; off: run every filter module in wazero")
	fl.StringVar(&f.wasi, "wasm-wasi", string(wasmhost.WASIEnvoy), "WASI surface of the filters: envoy (exactly what Envoy's host offers; a module importing more is NACKed) or full (wazero's complete WASI, for filters that never run in Envoy)")
	fl.StringVar(&f.service, "service", "", "run as the inbound sidecar of this Consul service (node.cluster=SERVICE, inbound_port=the --listen port): mTLS with its leaf, its AccessPolicy enforced as RBAC, traffic to the local app; empty: edge gateway")
	fl.IntVar(&f.localAppPort, "local-app-port", 0, "with --service: the local app's port on 127.0.0.1 (default: the plane's, 8080)")
	f.logs.register(fl)
	return cmd
}

// trustedModules returns the sha256 of every *.wasm file in dir, by file name.
func trustedModules(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.wasm"))
	if err != nil {
		return nil, fmt.Errorf("--wasm-trusted-dir %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("--wasm-trusted-dir %s: no .wasm files there: build them (make filters) or fix the path", dir)
	}
	sums := make(map[string]string, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--wasm-trusted-dir: %w", err)
		}
		sums[f] = modulefetch.Sum(b)
	}
	return sums, nil
}

func defaultGatewayCache() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "meshwarden", "gateway")
	}
	return ""
}

// runGateway wires the flags into the gateway's lifecycle: a Config (its
// listeners bound, the plane's credentials, tracing), then gateway.New
// (defaults and Validate), then Run (Start, serve until ctx ends, graceful
// Shutdown).
func runGateway(ctx context.Context, f gatewayFlags) error {
	log, err := f.logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg, err := f.config(log)
	if err != nil {
		return err
	}
	if f.otlpEndpoint != "" || gateway.OTLPFromEnv() {
		routeOTelErrors(log)
		tp, err := gateway.NewOTLPTracerProvider(ctx, f.otlpEndpoint, "meshwarden-gateway")
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(sctx)
		}()
		cfg.TracerProvider = tp
	}
	g, err := gateway.New(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("gateway starting", "listen", cfg.Listener.Addr(), "xds", f.xdsAddr, "node", cfg.NodeID, "admin", f.adminAddr)
	return g.Run(ctx)
}

// config turns the flags into a gateway.Config with its listeners bound.
func (f *gatewayFlags) config(log *slog.Logger) (gateway.Config, error) {
	if f.nodeID == "" {
		host, _ := os.Hostname()
		f.nodeID = "gateway-" + host
	}
	if f.callTimeout <= 0 {
		return gateway.Config{}, fmt.Errorf("--wasm-call-timeout %v: give a positive duration such as 1s", f.callTimeout)
	}
	if f.instances < 0 {
		return gateway.Config{}, fmt.Errorf("--wasm-instances %d: give 0 (one per CPU) or a positive count", f.instances)
	}
	trusted, err := f.trustedSums(log)
	if err != nil {
		return gateway.Config{}, err
	}
	if f.native != "on" && f.native != "off" {
		return gateway.Config{}, fmt.Errorf("--wasm-native %q: want on (official builds of the built-in filters run natively) or off (every module in wazero)", f.native)
	}
	if m := wasmhost.WASIMode(f.wasi); m != wasmhost.WASIEnvoy && m != wasmhost.WASIFull {
		return gateway.Config{}, fmt.Errorf("--wasm-wasi %q: want envoy (Envoy's WASI surface) or full (wazero's complete WASI)", f.wasi)
	}
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return gateway.Config{}, fmt.Errorf("listen on %s: %w: choose a free --listen address", f.listen, err)
	}
	dial, err := f.planeDialOptions(log)
	if err != nil {
		return gateway.Config{}, err
	}
	cfg := gateway.Config{XDSAddress: f.xdsAddr, XDSDialOptions: dial, NodeID: f.nodeID, Listener: lis, CacheDir: f.cacheDir,
		DrainTimeout: f.drain, MaxBufferBytes: f.maxBuffer, Logger: log, Registry: prometheus.NewRegistry(),
		WasmNoCallDeadline: f.noCallDeadline, WasmTrustedSHA256: trusted, WasmWASI: wasmhost.WASIMode(f.wasi), WasmCallTimeout: f.callTimeout, WasmInstances: f.instances, WasmNativeOff: f.native == "off",
		Service: f.service, LocalAppPort: f.localAppPort, ProfileTokenFile: f.adminTokenFile}
	cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.AdminListener, err = f.adminListener(); err != nil {
		lis.Close()
		return gateway.Config{}, err
	}
	return cfg, nil
}

// trustedSums returns --wasm-trusted-sha256 and the sums of the modules in
// --wasm-trusted-dir.
func (f *gatewayFlags) trustedSums(log *slog.Logger) ([]string, error) {
	trusted := f.trustedSHA
	if f.trustedDir == "" {
		return trusted, nil
	}
	sums, err := trustedModules(f.trustedDir)
	if err != nil {
		return nil, err
	}
	for name, sum := range sums {
		log.Info("wasm module trusted: no per-callback deadline", "file", name, "sha256", sum)
		trusted = append(trusted, sum)
	}
	return trusted, nil
}

// planeDialOptions checks the plane's credentials and returns the ADS
// connection's gRPC options.
func (f *gatewayFlags) planeDialOptions(log *slog.Logger) ([]grpc.DialOption, error) {
	if f.plane.TokenFile == "" {
		f.plane.Token = os.Getenv("CONSUL_HTTP_TOKEN")
	}
	if err := f.plane.Validate(f.xdsAddr); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	dial, err := f.plane.DialOptions()
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if f.plane.Insecure {
		log.Warn("INSECURE DEVELOPMENT MODE: xDS is plaintext and anonymous (--xds-insecure)")
	}
	return dial, nil
}

// adminListener binds --admin-addr (nil when empty), loopback only unless
// --admin-remote.
func (f *gatewayFlags) adminListener() (net.Listener, error) {
	if f.adminAddr == "" {
		return nil, nil
	}
	if !f.adminRemote && !isLoopback(f.adminAddr) {
		return nil, fmt.Errorf("--admin-addr %s is not loopback: the gateway's admin port is unauthenticated; listen on 127.0.0.1, or pass --admin-remote and protect it yourself", f.adminAddr)
	}
	lis, err := net.Listen("tcp", f.adminAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w: choose a free --admin-addr", f.adminAddr, err)
	}
	return lis, nil
}
