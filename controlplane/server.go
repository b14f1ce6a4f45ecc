package controlplane

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/controlplane/intentions"
	"github.com/meshwarden/meshwarden/controlplane/moduleserver"
	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
	"github.com/meshwarden/meshwarden/ir"
)

// PolicyLoader turns policy files (name → content) into a validated policy
// set; policies.LoadFiles is the production loader. The error says, per
// file and line, what to change.
type PolicyLoader func(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, error)

// Config configures a Server. Consul is required; everything else has a
// working zero value.
type Config struct {
	// Consul is the client of the agent to watch.
	Consul *api.Client
	// Watch tunes the Consul watcher.
	Watch consulwatch.Options
	// Translate are the plane-wide translation options; ModuleSHA256 is
	// filled from Modules when that is set.
	Translate translate.Options
	// Secrets, when set, supplies SDS secrets and turns on mTLS.
	Secrets SecretSource
	// Intentions, when set, adds Consul intentions as a second source of
	// access policy (an AccessPolicy document wins for its service; see
	// package intentions). Run starts it.
	Intentions *intentions.Watcher
	// Modules is the module server whose builds fill empty filter hashes.
	Modules *moduleserver.Server
	// Policies is the initial policy set (nil: none).
	Policies *ir.PolicySet
	// LoadPolicies parses policy files for POST /v1/policies:* and the
	// policy directory; nil disables both.
	LoadPolicies PolicyLoader
	// PolicyDir is polled (~1s) for changes when set. With a Store its
	// content is pushed to the store at start and on every change.
	PolicyDir string
	// Store, when set, holds the applied policy set in Consul KV: every
	// apply is written there first (check-and-set), and every set written
	// there by any replica is put in force here. Nil keeps the set in this
	// process only (one replica).
	Store *policystore.Store
	// Replica names this replica in the store's records (e.g. host:port).
	Replica string
	// OnPolicy, if set, is called with every policy set after it is swapped
	// in (e.g. to hand Certificates to the certificate manager). An error is
	// logged; the set stays applied.
	OnPolicy func(*ir.PolicySet) error
	// RecordChange, if set, is called with every policy set that replaces
	// a different one, after the swap: the files before and after, where
	// the set came from ("policy-dir <dir>" or "api") and who sent it (the
	// authenticated principal of an API apply, else ""). The plane's
	// change log (policies.ChangeLog) hangs here. An error is logged; the
	// set stays applied.
	RecordChange func(ctx context.Context, c PolicyChange) error
	// Debounce is the quiet time that coalesces bursts of changes
	// (default 20ms); a burst is cut after 5× Debounce.
	Debounce time.Duration
	// Auth authenticates every xDS stream and admin call against Consul's
	// ACL system and authorises it by Consul's rules (see package auth).
	// New refuses a nil Auth unless InsecureNoAuth is set.
	Auth *auth.Authenticator
	// InsecureNoAuth serves every caller unauthenticated: for development
	// on loopback and for tests of other concerns, never for production.
	InsecureNoAuth bool
	// Log receives structured logs; nil discards them.
	Log *slog.Logger
	// Registry receives the plane's metrics; nil means a private registry.
	Registry *prometheus.Registry
	// Rollouts configures the controller that runs Rollout policies.
	Rollouts RolloutOptions
	// Health scores every service subset from the metrics of the proxies
	// it scrapes (package health); zero Targets turns scoring off.
	Health health.Config
}

// Server is the control plane: watcher, translator, snapshot cache, ADS
// server and the bookkeeping behind the admin API.
type Server struct {
	// ctx is NewWithContext's ctx without its cancellation: the context of
	// the ADS server and of the request callbacks, which get none of their
	// own.
	ctx     context.Context
	cfg     Config
	log     *slog.Logger
	cache   cache.SnapshotCache
	xds     server.Server
	watcher *consulwatch.Watcher
	tcache  *translate.Cache
	m       *metrics
	kick    chan struct{}
	health  *health.Scorer // nil when scoring is off

	mu     sync.Mutex
	policy *ir.PolicySet
	// awaitPolicies holds every snapshot back until the first valid policy
	// set is applied, when a policy directory is configured: a proxy that
	// connects early must not run Consul-only config (no filters, so no
	// audit) while the policies are still loading, nor when they are invalid
	// at start-up. There is no last good set to fall back on then.
	awaitPolicies bool
	// policyFiles are the files of policy, for the change record's diff.
	policyFiles map[string][]byte
	shared      *translate.Shared
	buildErr    error
	nodes       map[string]*nodeState
	streams     map[int64]string
	rejection   *Rejection
	built       time.Time
	// pub memoises, per shared build, the snapshot of each kind of node
	// and the wire form of each resource (see publishLocked).
	pub *publishMemo

	authMu      sync.Mutex
	streamAuths map[int64]*streamAuth

	// applyMu serialises applies (API, policy dir, store).
	applyMu     sync.Mutex
	storeSet    *policystore.Set // the store's set as last seen or written
	storeErr    string
	storeLoaded chan struct{} // closed after the store's first read

	rollouts *rolloutController // nil when Rollouts.Disabled
}

type nodeState struct {
	info     xdsnode.Info
	tnode    translate.Node
	err      error
	streams  int
	current  *cache.Snapshot
	good     *cache.Snapshot
	snap     *translate.Snapshot
	goodSnap *translate.Snapshot
	// rejected holds versions Envoy NACKed; they are not pushed again.
	rejected map[string]bool
}

// PolicyChange describes one applied policy set for the change record.
type PolicyChange struct {
	Set              *ir.PolicySet
	Previous         string // revision replaced ("" for the first)
	Before, After    map[string][]byte
	Source, Identity string
}

// Rejection records the last thing refused: a NACK from a node, a policy
// set that failed validation, or a translation error.
type Rejection struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // "nack", "policy", "translate"
	Node    string    `json:"node,omitempty"`
	Nonce   string    `json:"nonce,omitempty"`
	TypeURL string    `json:"type_url,omitempty"`
	Version string    `json:"version,omitempty"`
	Error   string    `json:"error"`
}

// New is NewWithContext with no caller context, for callers that have none
// (tests of other packages). Code that has a context passes it to
// NewWithContext.
func New(cfg Config) (*Server, error) {
	return NewWithContext(context.Background(), cfg)
}

// NewWithContext builds a server; call Run to start watching and Register to
// serve. The ADS server keeps ctx's values but not its cancellation: ending
// the ADS streams is the job of whoever stops the gRPC server (Process.Shutdown
// deregisters from Consul first, then lets the streams end with
// GracefulStop), so a caller's cancelled ctx must not cut every proxy's
// stream before the plane has left the catalogue.
func NewWithContext(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Consul == nil {
		return nil, errors.New("controlplane: Config.Consul is nil: pass a Consul API client")
	}
	if cfg.Auth == nil && !cfg.InsecureNoAuth {
		return nil, errors.New("controlplane: Config.Auth is nil: pass an authenticator (package auth), or set InsecureNoAuth for a development plane")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 20 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Watch.Log == nil {
		cfg.Watch.Log = cfg.Log
	}
	cfg.Translate.MTLS = cfg.Translate.MTLS || cfg.Secrets != nil
	s := &Server{
		ctx:     context.WithoutCancel(ctx),
		cfg:     cfg,
		log:     cfg.Log,
		watcher: consulwatch.New(cfg.Consul, cfg.Watch),
		kick:    make(chan struct{}, 1),
		tcache:  translate.NewCache(),
		policy:  cfg.Policies,
		nodes:   map[string]*nodeState{},

		awaitPolicies: (cfg.PolicyDir != "" || cfg.Store != nil) && cfg.LoadPolicies != nil,
		streams:       map[int64]string{},
		streamAuths:   map[int64]*streamAuth{},
		storeLoaded:   make(chan struct{}),
	}
	s.cache = cache.NewSnapshotCache(true, cache.IDHash{}, cacheLogger{cfg.Log})
	s.m = newMetrics(cfg.Registry, s)
	if len(cfg.Health.Targets) > 0 {
		hc := cfg.Health
		hc.Policy = s.currentPolicy
		hc.OnChange = s.Kick
		if hc.Logger == nil {
			hc.Logger = cfg.Log.With("component", "health")
		}
		s.health = health.New(hc)
		cfg.Registry.MustRegister(s.health)
	}
	s.xds = server.NewServer(s.ctx, s.cache, s.callbacks())
	if !cfg.Rollouts.Disabled {
		s.rollouts = newRolloutController(s, cfg.Rollouts)
	}
	return s, nil
}

// Register adds the ADS service (SotW and delta) to g.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Cache returns the snapshot cache (read-only use: tests, dumps).
func (s *Server) Cache() cache.SnapshotCache { return s.cache }

// Watcher returns the Consul watcher.
func (s *Server) Watcher() *consulwatch.Watcher { return s.watcher }

// Kick asks for a rebuild (coalesced, debounced).
func (s *Server) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run watches Consul (and the policy dir, modules and secrets) and keeps
// every node's snapshot current until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.rollouts != nil {
		s.rollouts.preload(ctx)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.watcher.Run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.recheckStreams(ctx) }()
	if s.health != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.health.Run(ctx) }()
	}
	if s.cfg.Modules != nil {
		if _, err := s.cfg.Modules.Scan(); err != nil {
			s.log.Warn("module scan failed", "err", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.cfg.Modules.Run(ctx, time.Second, s.Kick) }()
	}
	if s.cfg.Store != nil && s.cfg.LoadPolicies != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.watchStore(ctx) }()
	}
	if s.cfg.PolicyDir != "" && s.cfg.LoadPolicies != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.watchPolicyDir(ctx, time.Second) }()
	}
	if s.rollouts != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.rollouts.run(ctx) }()
	}
	var secretsChanged <-chan struct{}
	if s.cfg.Secrets != nil {
		secretsChanged = s.cfg.Secrets.Changed()
	}
	var intentionsChanged <-chan struct{}
	if s.cfg.Intentions != nil {
		intentionsChanged = s.cfg.Intentions.Changed()
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.cfg.Intentions.Run(ctx) }()
	}
	s.rebuild(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.watcher.Changed():
		case <-s.kick:
		case <-secretsChanged:
		case <-intentionsChanged:
		}
		if !s.debounce(ctx, secretsChanged) {
			return nil
		}
		s.rebuild(ctx)
	}
}

// debounce waits until no event arrived for Debounce, at most 5× Debounce.
func (s *Server) debounce(ctx context.Context, secrets <-chan struct{}) bool {
	deadline := time.NewTimer(5 * s.cfg.Debounce)
	defer deadline.Stop()
	quiet := time.NewTimer(s.cfg.Debounce)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-quiet.C:
			return true
		case <-s.watcher.Changed():
		case <-s.kick:
		case <-secrets:
		}
		quiet.Reset(s.cfg.Debounce)
	}
}

func (s *Server) options() translate.Options {
	o := s.cfg.Translate
	if s.cfg.Modules != nil {
		sums := s.cfg.Modules.SHA256s()
		o.ModuleSHA256 = make(map[string]string, len(sums)+len(o.ModuleSHA256))
		maps.Copy(o.ModuleSHA256, sums)
		maps.Copy(o.ModuleSHA256, s.cfg.Translate.ModuleSHA256)
	}
	return o
}

// withIntentions merges the Consul intentions in force into ps (an
// AccessPolicy wins for its service), applies the shares of the rollouts
// in progress to their targets, and applies the health score: subsets
// scored unhealthy get their policy's
// outlierDetection.consecutive5xxWhenUnhealthy.
func (s *Server) withIntentions(ps *ir.PolicySet) *ir.PolicySet {
	if s.rollouts != nil {
		ps = s.rollouts.overlay(ps)
	}
	if s.health != nil {
		ps = ir.TightenUnhealthy(ps, s.health.Unhealthy())
	}
	if s.cfg.Intentions == nil {
		return ps
	}
	merged, _ := intentions.Merge(ps, s.cfg.Intentions.Policies())
	return merged
}

// rebuild translates the current catalog and policy and republishes every
// node. A translation error keeps the last good shared state.
func (s *Server) rebuild(ctx context.Context) {
	cat := s.watcher.Catalog()
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	shared, err := translate.BuildCached(s.tcache, cat, s.withIntentions(s.policy), s.options())
	s.m.translateSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		if verr := shared.Validate(); verr != nil {
			err = fmt.Errorf("generated resources fail Envoy validation: %w", verr)
		}
	}
	if err != nil {
		s.buildErr = err
		s.m.translateErrors.Inc()
		s.rejectLocked(Rejection{Kind: "translate", Error: err.Error()})
		s.log.Error("translation failed; the last good configuration keeps serving", "err", err)
		return
	}
	s.buildErr = nil
	s.setSharedLocked(shared)
	s.built = time.Now()
	for _, id := range slices.Sorted(maps.Keys(s.nodes)) {
		s.publishLocked(ctx, id)
	}
}

// publishMemo lets nodes with the same content (every sidecar of one
// service with the same ports) share one translated, validated, checked
// and premarshaled snapshot: the per-node cost of a push is then a map
// lookup and go-control-plane's own per-stream work.
type publishMemo struct {
	byKey     map[string]*memoEntry
	byVersion map[string]*cache.Snapshot
	marshal   *marshalMemo
}

type memoEntry struct {
	snap *translate.Snapshot
	err  error // ValidateNode's verdict
}

// setSharedLocked swaps in a new shared build and starts its memo.
func (s *Server) setSharedLocked(shared *translate.Shared) {
	s.shared = shared
	var prev *marshalMemo
	if s.pub != nil {
		prev = s.pub.marshal
	}
	s.pub = &publishMemo{byKey: map[string]*memoEntry{}, byVersion: map[string]*cache.Snapshot{}, marshal: newMarshalMemo(prev)}
}

// secretsKey identifies a list of secrets by content (the source builds
// new messages per call).
func secretsKey(secrets []types.Resource) (string, error) {
	if len(secrets) == 0 {
		return "", nil
	}
	h := sha256.New()
	for _, sec := range secrets {
		b, err := cache.MarshalResource(sec)
		if err != nil {
			return "", err
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return string(h.Sum(nil)), nil
}

func (s *Server) rejectLocked(r Rejection) {
	r.Time = time.Now()
	s.rejection = &r
}

// publishLocked builds and sets node id's snapshot if it changed.
func (s *Server) publishLocked(ctx context.Context, id string) {
	ns := s.nodes[id]
	if ns == nil || ns.err != nil || s.shared == nil || s.awaitPolicies {
		return
	}
	var secrets []types.Resource
	if s.cfg.Secrets != nil {
		list, err := s.cfg.Secrets.Secrets(ns.info)
		if err != nil {
			s.log.Error("secrets unavailable; node keeps its last snapshot", "node", id, "err", err)
			return
		}
		for _, sec := range list {
			secrets = append(secrets, sec)
		}
	}
	skey, err := secretsKey(secrets)
	if err != nil {
		s.log.Error("secrets cannot be encoded; node keeps its last snapshot", "node", id, "err", err)
		return
	}
	key := s.shared.NodeKey(ns.tnode) + "|" + skey
	e := s.pub.byKey[key]
	if e == nil {
		snap, err := s.shared.ForNode(ns.tnode, secrets)
		if err != nil {
			ns.err = err
			s.log.Error("node cannot be configured", "node", id, "err", err)
			return
		}
		e = &memoEntry{snap: snap, err: snap.ValidateNode()}
		s.pub.byKey[key] = e
	}
	snap := e.snap
	if ns.current != nil && ns.current.GetVersion(anyType) == snap.Version {
		return
	}
	if ns.rejected[snap.Version] {
		return
	}
	if e.err != nil {
		s.m.translateErrors.Inc()
		s.rejectLocked(Rejection{Kind: "translate", Node: id, Version: snap.Version, Error: e.err.Error()})
		s.log.Error("generated resources fail validation; not published", "node", id, "err", e.err)
		return
	}
	cs := s.pub.byVersion[snap.Version]
	if cs == nil {
		// Consistent needs the concrete resource types; what is published
		// is the same content premarshaled.
		var plain *cache.Snapshot
		plain, err = snap.CacheSnapshot()
		if err == nil {
			err = plain.Consistent()
		}
		if err == nil {
			cs, err = s.pub.marshal.publishable(snap.Version, snap.Resources)
		}
		if err == nil {
			s.pub.byVersion[snap.Version] = cs
		}
	}
	if err != nil {
		s.m.translateErrors.Inc()
		s.rejectLocked(Rejection{Kind: "translate", Node: id, Version: snap.Version, Error: err.Error()})
		s.log.Error("snapshot is not consistent; not published", "node", id, "err", err)
		return
	}
	if err := s.cache.SetSnapshot(ctx, id, cs); err != nil {
		s.log.Error("set snapshot", "node", id, "err", err)
		return
	}
	ns.current, ns.snap = cs, snap
	s.m.snapshots.Inc()
	s.log.Debug("snapshot published", "node", id, "version", snap.Version)
}

// anyType is a type whose version equals the snapshot's version (all types
// share the content-hash version).
const anyType = "type.googleapis.com/envoy.config.listener.v3.Listener"

// nodeInfo converts an xDS node.
func nodeInfo(n *corev3.Node) xdsnode.Info {
	info := xdsnode.Info{ID: n.GetId(), Cluster: n.GetCluster(), Metadata: map[string]string{}}
	for k, v := range n.GetMetadata().GetFields() {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			info.Metadata[k] = x.StringValue
		case *structpb.Value_NumberValue:
			info.Metadata[k] = strconv.FormatFloat(x.NumberValue, 'f', -1, 64)
		case *structpb.Value_BoolValue:
			info.Metadata[k] = strconv.FormatBool(x.BoolValue)
		}
	}
	info.Gateway = info.Cluster == meshnames.GatewayNodeCluster
	if !info.Gateway {
		info.Service = info.Cluster
	}
	return info
}

// nodeSeen registers a node on its first request and publishes its first
// snapshot before the server creates the watch, so the first response is
// immediate. A node id already connected under another node.cluster is
// refused: the second stream would otherwise share the first's snapshot,
// secrets included.
func (s *Server) nodeSeen(ctx context.Context, stream int64, n *corev3.Node) error {
	if n == nil || n.GetId() == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[stream]; ok {
		return nil
	}
	if ns := s.nodes[n.GetId()]; ns != nil && ns.info.Cluster != n.GetCluster() {
		return status.Errorf(codes.PermissionDenied, "node id %q is connected as %q; give each proxy its own node.id", n.GetId(), ns.info.Cluster)
	}
	s.streams[stream] = n.GetId()
	ns := s.nodes[n.GetId()]
	if ns == nil {
		info := nodeInfo(n)
		tn, err := translate.NodeFromMetadata(info.ID, info.Cluster, info.Metadata)
		ns = &nodeState{info: info, tnode: tn, err: err, rejected: map[string]bool{}}
		if err != nil {
			s.log.Error("node bootstrap is not usable", "node", info.ID, "err", err)
		}
		s.nodes[info.ID] = ns
	}
	ns.streams++
	if s.shared == nil {
		shared, err := translate.BuildCached(s.tcache, s.watcher.Catalog(), s.withIntentions(s.policy), s.options())
		if err == nil {
			err = shared.Validate()
		}
		if err != nil {
			s.log.Error("translation failed", "err", err)
			return nil
		}
		s.setSharedLocked(shared)
	}
	s.publishLocked(ctx, n.GetId())
	return nil
}

func (s *Server) streamClosed(stream int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.streams[stream]
	if !ok {
		return
	}
	delete(s.streams, stream)
	ns := s.nodes[id]
	if ns == nil {
		return
	}
	ns.streams--
	if ns.streams <= 0 {
		delete(s.nodes, id)
		s.cache.ClearSnapshot(id)
	}
}

// request handles ACK/NACK bookkeeping for one request on a stream.
func (s *Server) request(ctx context.Context, stream int64, typeURL, version, nonce string, detail error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.streams[stream]
	ns := s.nodes[id]
	if ns == nil {
		return
	}
	if detail == nil {
		if nonce != "" && ns.current != nil && (version == "" || version == ns.current.GetVersion(typeURL)) {
			ns.good, ns.goodSnap = ns.current, ns.snap
		}
		return
	}
	s.m.nacks.WithLabelValues(typeURL).Inc()
	bad := ""
	if ns.current != nil {
		bad = ns.current.GetVersion(typeURL)
	}
	s.log.Error("proxy rejected configuration (NACK); keeping its last good snapshot",
		"node", id, "nonce", nonce, "type_url", typeURL, "rejected_version", bad, "error", detail.Error())
	s.rejectLocked(Rejection{Kind: "nack", Node: id, Nonce: nonce, TypeURL: typeURL, Version: bad, Error: detail.Error()})
	if bad != "" {
		ns.rejected[bad] = true
	}
	if ns.good != nil && ns.good != ns.current {
		if err := s.cache.SetSnapshot(ctx, id, ns.good); err != nil {
			s.log.Error("restore last good snapshot", "node", id, "err", err)
			return
		}
		ns.current, ns.snap = ns.good, ns.goodSnap
	}
}

type statusErr struct{ msg string }

func (e statusErr) Error() string { return e.msg }

func errorDetail(code int32, msg string) error {
	if code == 0 && msg == "" {
		return nil
	}
	return statusErr{fmt.Sprintf("code %d: %s", code, msg)}
}

// Health returns the subset health scores; ok is false when scoring is
// off (no --health-scrape targets).
func (s *Server) Health() (st health.Status, ok bool) {
	if s.health == nil {
		return health.Status{}, false
	}
	return s.health.Status(), true
}
