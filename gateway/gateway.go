// Package gateway is Meshwarden's edge gateway: an xDS client of the
// control plane (LDS, RDS, CDS, EDS, SDS, ECDS over ADS) that proxies HTTP/1.1,
// HTTP/2 (TLS and h2c), gRPC and WebSocket traffic through the same
// proxy-wasm filters Envoy runs, hosted by gateway/wasmhost.
//
// Every accepted xDS update is decoded and validated, then a complete model
// (listener → routes → clusters → endpoints, filters, secrets) is built and
// published with one atomic pointer swap; requests in flight finish on the
// model they started with. When the plane is unreachable the last good model
// keeps serving. See README.md for the configuration and RATIONALE in
// docs/RATIONALE-gateway.md for the choices.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/gateway/nativefilters"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/gateway/xdsclient"
)

// Config configures a Gateway.
type Config struct {
	// XDSAddress is the control plane's ADS address (host:port). Required.
	XDSAddress string
	// NodeID is the xDS node id; empty means "gateway-<listener port>" (the
	// CLI's default is "gateway-<hostname>").
	NodeID string
	// Listener is the bound listening socket for proxied traffic. Its port is
	// sent as node metadata listen_port. Required.
	Listener net.Listener
	// AdminListener serves /healthz, /readyz, /metrics and /config_dump. Optional.
	AdminListener net.Listener
	// CacheDir holds fetched modules and wazero's compilation cache. Empty
	// disables both disk caches.
	CacheDir string
	// TracerProvider receives the server and client spans. Nil means no
	// spans (W3C headers still pass through untouched).
	TracerProvider trace.TracerProvider
	// DrainTimeout bounds the graceful drain at shutdown. Zero means 10s.
	DrainTimeout time.Duration
	// MaxBufferBytes bounds the body a filter may buffer per direction. Zero
	// means 1 MiB; beyond it the request gets 413 (response: 500).
	MaxBufferBytes int
	// Registry receives the metrics. Nil means a new private registry.
	Registry *prometheus.Registry
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
	// WasmNoCallDeadline turns off the per-callback deadline of the wasm host
	// (wasmhost.RuntimeConfig.NoCallDeadline): faster, but a guest stuck in a
	// loop then hangs its instance. Only for reviewed filters.
	WasmNoCallDeadline bool
	// WasmTrustedSHA256 lists filter modules (hex sha256 of the .wasm) that
	// run without the per-callback deadline while every other module keeps
	// it (wasmhost.RuntimeConfig.TrustedSHA256). For modules you reviewed
	// and built yourself, such as Meshwarden's own filters.
	WasmTrustedSHA256 []string
	// WasmNativeOff makes every filter module run in wazero. By default a
	// module whose sha256 is the official build of a built-in filter
	// (filters/official.sha256) runs natively: the same Go code, linked
	// into the gateway (gateway/nativefilters). /config_dump shows each
	// filter's runtime.
	WasmNativeOff bool
	// WasmWASI is the WASI surface filters get (wasmhost.RuntimeConfig.WASI):
	// "" or "envoy" offers exactly Envoy's, so a filter that would fail in an
	// Envoy sidecar is refused (NACKed) or fails here too; "full" offers
	// wazero's complete WASI, for filters that never run in Envoy.
	WasmWASI wasmhost.WASIMode
	// WasmCallTimeout bounds every single call into a filter module,
	// start-up callbacks included (_initialize, proxy_on_vm_start,
	// proxy_on_configure): a module that overruns it at start is refused
	// and the filter's last known good version keeps running. Zero means
	// 1 s (wasmhost.PluginConfig.CallTimeout).
	WasmCallTimeout time.Duration
	// WasmInstances is the most instances of each filter module. Streams
	// share them (each holds its instance only while its callbacks run), so
	// at most GOMAXPROCS are busy at once; more only add memory. Zero means
	// GOMAXPROCS (wasmhost.PluginConfig.PoolSize).
	WasmInstances int
	// XDSDialOptions are the gRPC options of the ADS connection: TLS and
	// the proxy's credential (controlplane/auth.ClientOptions.DialOptions).
	// Required with XDSAddress unless XDSInsecure.
	XDSDialOptions []grpc.DialOption
	// XDSInsecure, DEVELOPMENT ONLY, dials the plane in plaintext with no
	// credential (a --insecure-dev plane on loopback) when XDSDialOptions is
	// empty. Nothing is plaintext unless a caller says so.
	XDSInsecure bool
	// Service, when set, runs the gateway as the inbound sidecar of that
	// Consul service (where there is no Envoy): node.cluster is Service and
	// node metadata inbound_port is the listener's port, so the plane sends
	// the service's inbound listener — mTLS with the service's leaf, the
	// access (RBAC) filters, routes to the local app. Empty: edge gateway
	// (node.cluster meshwarden-gateway).
	Service string
	// LocalAppPort is the local app's port on 127.0.0.1 (sidecar mode,
	// node metadata local_app_port); zero means the plane's default (8080).
	LocalAppPort int
	// XDSMinBackoff/XDSMaxBackoff bound the reconnect delay (defaults 100ms/5s).
	XDSMinBackoff, XDSMaxBackoff time.Duration
	// ProfileTokenFile holds the bearer token that /debug/pprof/ on the
	// admin port requires (profiles.go); empty refuses profiles.
	ProfileTokenFile string
}

// Gateway is an edge gateway (or inbound sidecar). Its lifecycle: New
// (defaults, Validate, prepare) → Start → Shutdown or Close; Run is Start,
// wait for ctx, Shutdown.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	port    int
	addr    string // the listener's address, the filters' destination.address
	store   *store
	xds     *xdsclient.Client
	rt      *wasmhost.Runtime
	plugins *pluginManager
	secrets secretHolder
	model   atomic.Pointer[model]
	ready   atomic.Bool
	drain   atomic.Bool
	met     *metrics
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	tracing bool // false: no spans, W3C headers pass through untouched
	bufs    copyBuffers

	buildMu   sync.Mutex
	retiring  map[*model]struct{}    // swapped-out models some request may still hold; under buildMu
	lastBuild atomic.Pointer[string] // the last build outcome when it was not a swap; read without buildMu
	readyC    chan struct{}          // a filter finished starting in the background: rebuild
	liveMu    sync.Mutex
	live      map[string]*clusterLive
	trs       map[string]*upstreamTransport
	retryOnce sync.Once
	retryC    chan struct{}

	// Lifecycle: Start sets srv, admin and stopXDS; Shutdown undoes them.
	baseCtx      context.Context // New's ctx without its cancellation, for Close
	srv, admin   *http.Server
	errc         chan error // a server's failure
	stopXDS      context.CancelFunc
	bg           sync.WaitGroup // the xDS client and the retry loop
	shutdownOnce sync.Once
	shutdownErr  error
}

// Validate reports a configuration the gateway cannot run with, saying what
// to change.
func (cfg Config) Validate() error {
	if cfg.Listener == nil {
		return errors.New("gateway: no listener: bind the proxy address first (--listen)")
	}
	if cfg.Service == meshnames.GatewayNodeCluster {
		return fmt.Errorf("gateway: service %q is the edge gateway's own cluster: leave Service (--service) empty for an edge gateway", cfg.Service)
	}
	if cfg.XDSAddress != "" && len(cfg.XDSDialOptions) == 0 && !cfg.XDSInsecure {
		return errors.New("gateway: no xDS credentials: set XDSDialOptions (controlplane/auth.ClientOptions.DialOptions: TLS and the proxy's token), or XDSInsecure for a --insecure-dev plane")
	}
	return nil
}

// xdsDialOptions are cfg's xDS credentials; plaintext only when the caller
// asked for it (Validate refuses neither).
func xdsDialOptions(cfg Config) []grpc.DialOption {
	if len(cfg.XDSDialOptions) == 0 && cfg.XDSInsecure {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return cfg.XDSDialOptions
}

// withDefaults returns cfg with every unset field that has a default set:
// DrainTimeout 10s, MaxBufferBytes 1 MiB, a discarding Logger, a private
// Registry, NodeID "gateway-<listener port>". TracerProvider stays nil: nil
// means no spans.
func (cfg Config) withDefaults() Config {
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.MaxBufferBytes <= 0 {
		cfg.MaxBufferBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.NodeID == "" && cfg.Listener != nil {
		cfg.NodeID = "gateway-" + strconv.Itoa(portOf(cfg.Listener.Addr()))
	}
	return cfg
}

// New validates cfg, applies its defaults and prepares a Gateway: the wasm
// runtime and the xDS client. It starts nothing; Start (or Run) does.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tracing := cfg.TracerProvider != nil
	tp := cfg.TracerProvider
	if !tracing {
		tp = noop.NewTracerProvider()
	}
	g := &Gateway{
		cfg: cfg, log: cfg.Logger, port: portOf(cfg.Listener.Addr()), addr: cfg.Listener.Addr().String(),
		live: map[string]*clusterLive{}, trs: map[string]*upstreamTransport{},
		tracer: tp.Tracer("github.com/meshwarden/meshwarden/gateway"),
		// Trace context only: the baggage header belongs to the caller and
		// the filters (the dye filter writes the lane into it), so the
		// gateway must not re-inject the baggage it saw before they ran.
		prop:   propagation.TraceContext{},
		retryC: make(chan struct{}, 1), readyC: make(chan struct{}, 1), tracing: tracing,
		baseCtx: context.WithoutCancel(ctx), errc: make(chan error, 2),
	}
	g.store = newStore(g)
	g.met = newMetrics(g, cfg.Registry)
	rtCfg := wasmhost.RuntimeConfig{NoCallDeadline: cfg.WasmNoCallDeadline, TrustedSHA256: cfg.WasmTrustedSHA256, WASI: cfg.WasmWASI}
	if !cfg.WasmNativeOff {
		native, err := nativefilters.Builtin()
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		rtCfg.Native = native
	}
	fetcher := &modulefetch.Fetcher{}
	if cfg.CacheDir != "" {
		rtCfg.CacheDir = cfg.CacheDir + "/compiled"
		fetcher.Dir = cfg.CacheDir + "/modules"
	}
	rt, err := wasmhost.NewRuntime(ctx, rtCfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.rt = rt
	nodeCluster := meshnames.GatewayNodeCluster
	md := map[string]any{"listen_port": strconv.Itoa(g.port)}
	if cfg.Service != "" {
		nodeCluster = cfg.Service
		md["inbound_port"] = strconv.Itoa(g.port)
		if cfg.LocalAppPort > 0 {
			md["local_app_port"] = strconv.Itoa(cfg.LocalAppPort)
		}
	}
	props := map[string][]byte{
		"node.id": []byte(cfg.NodeID), "node.cluster": []byte(nodeCluster),
		"listener_direction": {1}, // INBOUND, as Envoy encodes it
	}
	g.plugins = newPluginManager(rt, fetcher, (*callout)(g), g.log, props, func(name string) {
		g.met.moduleErrors.WithLabelValues(name).Inc()
	})
	// A filter's error counter exists at zero from its first
	// configuration: a series that appears at 1 with its first error
	// shows no increase() to a rollout analysis or an alert, so the first
	// broken release would pass as healthy.
	g.plugins.onFilter = func(name string) { g.met.moduleErrors.WithLabelValues(name) }
	g.plugins.callTimeout = cfg.WasmCallTimeout
	g.plugins.poolSize = cfg.WasmInstances
	g.plugins.onReady = func() {
		select {
		case g.readyC <- struct{}{}:
		default:
		}
	}
	meta, _ := structpb.NewStruct(md)
	xc, err := xdsclient.New(xdsclient.Config{
		Target: cfg.XDSAddress,
		Node: &core.Node{Id: cfg.NodeID, Cluster: nodeCluster, Metadata: meta,
			UserAgentName: "meshwarden-gateway"},
		DialOptions: xdsDialOptions(cfg),
		MinBackoff:  cfg.XDSMinBackoff, MaxBackoff: cfg.XDSMaxBackoff,
		Logger: g.log, OnEvent: g.met.xdsEvent,
	}, g.store)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.xds = xc
	return g, nil
}

// Addr returns the proxy's listening address.
func (g *Gateway) Addr() net.Addr { return g.cfg.Listener.Addr() }

// Ready reports whether a first complete configuration is serving.
func (g *Gateway) Ready() bool { return g.ready.Load() && !g.drain.Load() }

// Run serves until ctx ends or a server fails, then shuts down gracefully:
// Start, wait, Shutdown. It returns the server's failure, if any.
func (g *Gateway) Run(ctx context.Context) error {
	if err := g.Start(ctx); err != nil {
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-g.errc:
	}
	_ = g.Shutdown(context.WithoutCancel(ctx))
	return runErr
}

// Start starts serving in the background: the xDS client, the module retry
// loop, the proxy on Config.Listener and the admin server on
// Config.AdminListener. It returns at once; the gateway turns Ready once the
// first complete configuration arrives. The xDS client keeps ctx's values but
// runs until Shutdown, so that configuration still arrives while draining.
// A server that fails is reported by Run; call Start once.
func (g *Gateway) Start(ctx context.Context) error {
	if g.srv != nil {
		return errors.New("gateway: already started")
	}
	g.srv = &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		Protocols:         new(http.Protocols),
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	g.srv.Protocols.SetHTTP1(true)
	g.srv.Protocols.SetHTTP2(true)
	g.srv.Protocols.SetUnencryptedHTTP2(true)
	xctx, stopXDS := context.WithCancel(context.WithoutCancel(ctx))
	g.stopXDS = stopXDS
	g.bg.Add(3)
	go func() { defer g.bg.Done(); _ = g.xds.Run(xctx) }()
	go func() { defer g.bg.Done(); g.retryLoop(xctx) }()
	go func() { defer g.bg.Done(); g.readyLoop(xctx) }()
	go g.serve(g.srv, &tlsSwitchListener{Listener: g.cfg.Listener, g: g}, "serve")
	if g.cfg.AdminListener != nil {
		g.admin = &http.Server{Handler: g.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go g.serve(g.admin, g.cfg.AdminListener, "admin")
	}
	return nil
}

// serve runs one server and reports its failure on g.errc.
func (g *Gateway) serve(srv *http.Server, lis net.Listener, what string) {
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.errc <- fmt.Errorf("gateway: %s: %w", what, err)
	}
}

// Shutdown drains and releases the gateway: it turns unready, stops
// accepting, lets requests in flight finish (bounded by DrainTimeout and
// ctx), stops the xDS client, and releases the filters, the upstream pools
// and the wasm runtime. Later calls return the first call's result.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.shutdownOnce.Do(func() { g.shutdownErr = g.shutdown(ctx) })
	return g.shutdownErr
}

// Close is Shutdown with no bound but DrainTimeout.
func (g *Gateway) Close() error { return g.Shutdown(g.baseCtx) }

func (g *Gateway) shutdown(ctx context.Context) error {
	g.drain.Store(true)
	var err error
	if g.srv != nil {
		g.log.Info("draining", "timeout", g.cfg.DrainTimeout)
		dctx, cancel := context.WithTimeout(ctx, g.cfg.DrainTimeout)
		defer cancel()
		if serr := g.srv.Shutdown(dctx); serr != nil {
			g.log.Warn("drain incomplete; closing the remaining connections", "err", serr)
			err = g.srv.Close()
		}
		g.stopXDS()
		g.bg.Wait()
	}
	if g.admin != nil {
		_ = g.admin.Close()
	}
	wctx, cancel := context.WithTimeout(ctx, g.cfg.DrainTimeout)
	defer cancel()
	startsEnded := g.plugins.closeAll(wctx)
	g.liveMu.Lock()
	for _, t := range g.trs {
		t.close()
	}
	g.liveMu.Unlock()
	if !startsEnded {
		// A filter version is still starting (a trusted module looping at
		// start-up cannot be stopped): closing the runtime under it would
		// crash; the process is ending anyway.
		g.log.Warn("a wasm filter is still starting; its runtime is left to the process exit")
		return err
	}
	return errors.Join(err, g.rt.Close(context.WithoutCancel(ctx)))
}

// rebuild builds a model from the store and publishes it if complete.
func (g *Gateway) rebuild(ctx context.Context) {
	g.buildMu.Lock()
	defer g.buildMu.Unlock()
	res, versions := g.store.snapshot()
	m, err := g.build(ctx, res, versions)
	if err != nil {
		var w *warmingError
		if errors.As(err, &w) {
			g.setLastBuild("warming: " + err.Error())
			g.log.Debug("config warming", "missing", w.missing)
		} else {
			g.setLastBuild("rejected: " + err.Error())
			g.log.Error("config not applied; the last good one keeps serving", "err", err)
		}
		return
	}
	g.setLastBuild("")
	g.secrets.p.Store(&m.secrets)
	old := g.model.Swap(m)
	g.ready.Store(true)
	g.met.modelSwapped(m)
	g.pruneTransports(m)
	if old != nil {
		if g.retiring == nil {
			g.retiring = map[*model]struct{}{}
		}
		g.retiring[old] = struct{}{}
		go g.retire(old)
	}
	if g.plugins.failing() {
		select {
		case g.retryC <- struct{}{}:
		default:
		}
	}
}

func (g *Gateway) setLastBuild(s string) { g.lastBuild.Store(&s) }

// readyLoop rebuilds when a filter version finished starting in the
// background, so it replaces its last known good (or unblocks its listener)
// without waiting for the next xDS push.
func (g *Gateway) readyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.readyC:
			g.rebuild(ctx)
		}
	}
}

// retryLoop rebuilds every few seconds while a filter module is failing, so
// a module server that comes back is picked up without a new xDS push.
func (g *Gateway) retryLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.retryC:
		}
		t := time.NewTimer(3 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		g.rebuild(ctx)
	}
}

// retire closes the plugins no model uses any more, once old's last request
// is done (bounded: a stuck request cannot hold them for more than 5
// minutes). Models swapped out before old may still be serving requests (a
// burst of swaps retires several at once): their plugins are kept until
// their own retire, so no request finds its filters closed.
func (g *Gateway) retire(old *model) {
	deadline := time.Now().Add(5 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for old.refs.Load() > 0 && time.Now().Before(deadline) {
		<-tick.C
	}
	// Under buildMu: a build in progress has resolved plugins it has not
	// published yet.
	g.buildMu.Lock()
	delete(g.retiring, old)
	keep := append([]*wasmhost.Plugin(nil), g.model.Load().plugins...)
	for m := range g.retiring {
		keep = append(keep, m.plugins...)
	}
	unused := g.plugins.unused(keep)
	g.buildMu.Unlock()
	for _, p := range unused {
		p.Close()
	}
}

// acquire returns the current model with a reference held; release it.
func (g *Gateway) acquire() *model {
	for {
		m := g.model.Load()
		if m == nil {
			return nil
		}
		m.refs.Add(1)
		if g.model.Load() == m {
			return m
		}
		m.refs.Add(-1) // swapped meanwhile: take the new one
	}
}

func (g *Gateway) clusterLive(name string) *clusterLive {
	g.liveMu.Lock()
	defer g.liveMu.Unlock()
	return getOrAdd(g.live, name, func() *clusterLive {
		return &clusterLive{eps: map[string]*epState{}, connFreed: make(chan struct{}, 1)}
	})
}

func (g *Gateway) transport(spec *clusterSpec) *upstreamTransport {
	g.liveMu.Lock()
	defer g.liveMu.Unlock()
	t := g.trs[spec.name]
	if t != nil && t.key == spec.key {
		return t
	}
	if t != nil {
		go t.close() // connection settings changed: new pool
	}
	t = newUpstreamTransport(spec, &g.secrets)
	g.trs[spec.name] = t
	return t
}

func (g *Gateway) pruneTransports(m *model) {
	g.liveMu.Lock()
	defer g.liveMu.Unlock()
	for name, t := range g.trs {
		if _, ok := m.clusters[name]; !ok {
			t.close()
			delete(g.trs, name)
			delete(g.live, name)
		}
	}
}
