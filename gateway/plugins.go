package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// pluginManager turns wasm filter configs into running plugins. A plugin is
// reused while its config is unchanged. A new version is fetched, compiled
// and started in the background (startJob), never under the build: a build
// waits for it at most startWait, and only when the filter has no last known
// good plugin; otherwise the last known good keeps running until the new one
// is ready, and its readiness triggers a rebuild (onReady). When a new
// version fails to fetch, verify or start (a guest that traps or overruns
// its CallTimeout in _initialize, proxy_on_vm_start or proxy_on_configure),
// the last known good plugin of that filter keeps running; without one, the
// filter's fail policy decides (fail open: skipped; fail closed: the
// listener answers 503). Every outcome is recorded for /config_dump and the
// metrics.
type pluginManager struct {
	rt      *wasmhost.Runtime
	fetch   *modulefetch.Fetcher
	caller  wasmhost.HTTPCaller
	log     *slog.Logger
	props   map[string][]byte
	onError func(filter string)
	// onFilter is called once per filter name, when its first
	// configuration arrives (the metrics start its series at zero).
	onFilter func(filter string)
	onReady  func() // a background start finished: rebuild

	// startWait bounds how long a build waits for a filter with no last
	// known good plugin to start before it reports the model as warming.
	startWait time.Duration
	// callTimeout is every plugin's CallTimeout (zero: wasmhost's default).
	callTimeout time.Duration
	// poolSize is every plugin's PoolSize (zero: wasmhost's default).
	poolSize int

	mu      sync.Mutex
	closed  bool
	byKey   map[string]*wasmhost.Plugin
	lkg     map[string]*wasmhost.Plugin // filter name → last known good
	status  map[string]*filterStatus
	pending map[string]*startJob // config key → start in progress or failed
	latest  map[string]string    // filter name → the config key the last build asked for
	jobs    sync.WaitGroup       // running start jobs; closeAll waits for them
}

// startJob is one background start of a filter version.
type startJob struct {
	done     chan struct{} // closed when p/err are set
	p        *wasmhost.Plugin
	err      error
	began    time.Time
	ended    time.Time // set with p/err
	failures int       // consecutive failed starts of this key, for the retry backoff
	reported bool      // the failure was recorded in the status and metrics
}

// retryAfter is the backoff before a failed start of the same version is
// tried again: 3 s after a fetch or compile failure (the module server may
// come back); after the guest itself failed to start, 3 s doubling per
// failure, at most 5 min (a guest that loops at start-up costs a core for
// its CallTimeout on every try).
func (j *startJob) retryAfter() time.Duration {
	return min(3*time.Second<<min(j.failures-1, 7), 5*time.Minute)
}

// startUpError is a guest that failed to start (trap, timeout or refusal in
// its start-up callbacks), as opposed to a fetch or compile failure.
type startUpError struct{ err error }

func (e *startUpError) Error() string { return e.err.Error() }
func (e *startUpError) Unwrap() error { return e.err }

type filterStatus struct {
	Name       string    `json:"name"`
	SHA256     string    `json:"sha256,omitempty"`
	State      string    `json:"state"` // running, starting, last_known_good, fail_open_skipped, fail_closed
	LastError  string    `json:"last_error,omitempty"`
	ErrorAt    time.Time `json:"error_at,omitzero"`
	RunningSHA string    `json:"running_sha256,omitempty"`
	// CallDeadline says whether the running module's callbacks are bounded
	// (false for modules the operator trusted with --wasm-trusted-*). For a
	// native filter the deadline is checked when the callback returns (the
	// instance is then discarded): native code is never interrupted.
	CallDeadline *bool `json:"call_deadline,omitempty"`
	// Runtime is how the running module runs: "native" (the official build
	// of a built-in filter, its Go code linked into the gateway) or "wasm"
	// (wazero).
	Runtime string `json:"runtime,omitempty"`
}

func newPluginManager(rt *wasmhost.Runtime, f *modulefetch.Fetcher, caller wasmhost.HTTPCaller, log *slog.Logger, props map[string][]byte, onError func(string)) *pluginManager {
	return &pluginManager{rt: rt, fetch: f, caller: caller, log: log, props: props, onError: onError,
		startWait: time.Second, onReady: func() {},
		byKey: map[string]*wasmhost.Plugin{}, lkg: map[string]*wasmhost.Plugin{}, status: map[string]*filterStatus{},
		pending: map[string]*startJob{}, latest: map[string]string{}}
}

// configKey names a filter's running version: its name and its whole
// configuration, except where remote code pinned by sha256 is fetched from.
// Each plane replica serves modules at its own address, so a gateway that
// fails over to another replica keeps its running plugins instead of
// restarting every filter for the same code (Envoy likewise keys its VMs by
// the code's hash, not by the URL).
func configKey(name string, w *wasmfilter.Wasm) string {
	if r := w.GetConfig().GetVmConfig().GetCode().GetRemote(); r.GetSha256() != "" && r.GetHttpUri() != nil {
		w = proto.Clone(w).(*wasmfilter.Wasm)
		w.GetConfig().GetVmConfig().GetCode().GetRemote().HttpUri = nil
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(w)
	s := sha256.Sum256(b)
	return name + "/" + hex.EncodeToString(s[:])
}

// resolution is what a build runs for one filter slot.
type resolution struct {
	p          *wasmhost.Plugin // nil: none to run
	failClosed bool             // with p nil: the listener answers 503
	starting   string           // with p nil: the version is still starting (the model warms)
}

// resolve returns the plugin to run for filter name. A version that is still
// starting with no last known good to run meanwhile makes the model warm,
// as Envoy's listener warms until its remote Wasm code is ready: the
// serving model stays until the start ends (it is bounded by the plugin's
// call timeout on every start-up callback).
func (pm *pluginManager) resolve(ctx context.Context, name string, w *wasmfilter.Wasm) resolution {
	key := configKey(name, w)
	cfg, cfgErr := wasmhost.PluginConfigFromProto(w.GetConfig())
	pm.mu.Lock()
	if _, seen := pm.latest[name]; !seen && pm.onFilter != nil {
		pm.onFilter(name)
	}
	if prev := pm.latest[name]; prev != key {
		pm.forgetFailedLocked(prev)
		pm.latest[name] = key
	}
	if p := pm.byKey[key]; p != nil {
		pm.lkg[name] = p
		// Back on a build that runs (e.g. a release rolled back after a
		// broken one): the status says so again.
		st := getOrAdd(pm.status, name, func() *filterStatus { return &filterStatus{Name: name} })
		st.SHA256 = cfg.CodeSHA256
		pm.setRunning(st, p, cfg.CodeSHA256)
		pm.mu.Unlock()
		return resolution{p: p}
	}
	var job *startJob
	if cfgErr == nil {
		job = pm.startLocked(ctx, name, key, w, cfg)
	}
	hasLKG := pm.lkg[name] != nil
	pm.mu.Unlock()
	if job != nil && !hasLKG {
		t := time.NewTimer(pm.startWait)
		select {
		case <-job.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	st := getOrAdd(pm.status, name, func() *filterStatus { return &filterStatus{Name: name} })
	st.SHA256 = cfg.CodeSHA256
	err := cfgErr
	if job != nil {
		select {
		case <-job.done:
			if job.err == nil { // installed in byKey by the job
				pm.lkg[name] = job.p
				pm.setRunning(st, job.p, cfg.CodeSHA256)
				return resolution{p: job.p}
			}
			err = job.err
		default:
			return pm.starting(st, name, job)
		}
	}
	return pm.failed(st, name, cfg, err, job)
}

func (pm *pluginManager) setRunning(st *filterStatus, p *wasmhost.Plugin, sha string) {
	st.State, st.LastError, st.RunningSHA = "running", "", sha
	deadline := p.Module().CallDeadline()
	st.CallDeadline = &deadline
	st.Runtime = p.Module().Runtime()
}

// startLocked returns the start job of key, starting one if there is none or
// the last one failed longer than its backoff ago (counted from its end). The start keeps ctx's
// values, not its cancellation. pm.mu is held.
func (pm *pluginManager) startLocked(ctx context.Context, name, key string, w *wasmfilter.Wasm, cfg wasmhost.PluginConfig) *startJob {
	job := pm.pending[key]
	failures := 0
	if job != nil {
		select {
		case <-job.done:
			if job.err == nil || time.Since(job.ended) < job.retryAfter() {
				return job
			}
			failures = job.failures
		default:
			return job // still starting
		}
	}
	job = &startJob{done: make(chan struct{}), began: time.Now(), failures: failures}
	pm.pending[key] = job
	pm.jobs.Add(1)
	go func() {
		defer pm.jobs.Done()
		p, err := pm.start(context.WithoutCancel(ctx), w, cfg)
		pm.mu.Lock()
		job.p, job.err, job.ended = p, err, time.Now()
		var su *startUpError
		if errors.As(err, &su) {
			job.failures++ // the guest failed: back off
		} else if err != nil {
			job.failures = 1 // fetch or compile: retry every 3 s
		} else if !pm.closed {
			// In byKey at once, even if no build asks for this version
			// again: unused() then closes it after the next swap.
			pm.byKey[key] = p
			delete(pm.pending, key)
		}
		closed := pm.closed
		close(job.done)
		if pm.latest[name] != key {
			pm.forgetFailedLocked(key) // no build asks for it any more
		}
		pm.mu.Unlock()
		if err != nil {
			pm.log.Error("wasm filter version refused; the last known good (if any) keeps running", "filter", cfg.Name, "sha256", cfg.CodeSHA256, "err", err)
		}
		if closed && p != nil {
			p.Close()
			return
		}
		pm.onReady()
	}()
	return job
}

// forgetFailedLocked drops the record of a version that failed to start once
// no build asks for it any more, so a stream of broken releases does not
// accumulate. (A start still running is forgotten when it ends: by unused if it
// succeeded, here if it failed.)
// pm.mu is held.
func (pm *pluginManager) forgetFailedLocked(key string) {
	job := pm.pending[key]
	if job == nil {
		return
	}
	select {
	case <-job.done:
		if job.err != nil {
			delete(pm.pending, key)
		}
	default:
	}
}

// starting records a version still starting after the build's wait. pm.mu
// is held.
func (pm *pluginManager) starting(st *filterStatus, name string, job *startJob) resolution {
	msg := fmt.Sprintf("starting since %s", job.began.UTC().Format(time.RFC3339))
	if old := pm.lkg[name]; old != nil {
		st.State, st.LastError = "last_known_good", "new version "+msg
		return resolution{p: old}
	}
	st.State, st.LastError, st.RunningSHA, st.CallDeadline, st.Runtime = "starting", msg, "", nil, ""
	return resolution{starting: msg}
}

// failed records a version that could not start. pm.mu is held.
func (pm *pluginManager) failed(st *filterStatus, name string, cfg wasmhost.PluginConfig, err error, job *startJob) resolution {
	if job == nil || !job.reported {
		st.LastError, st.ErrorAt = err.Error(), time.Now()
		if pm.onError != nil {
			pm.onError(name)
		}
		if job != nil {
			job.reported = true
		}
	}
	if old := pm.lkg[name]; old != nil {
		st.State = "last_known_good"
		return resolution{p: old}
	}
	st.RunningSHA, st.CallDeadline, st.Runtime = "", nil, ""
	if cfg.FailOpen {
		st.State = "fail_open_skipped"
		return resolution{}
	}
	st.State = "fail_closed"
	return resolution{failClosed: true}
}

func (pm *pluginManager) start(ctx context.Context, w *wasmfilter.Wasm, cfg wasmhost.PluginConfig) (*wasmhost.Plugin, error) {
	code := w.GetConfig().GetVmConfig().GetCode()
	var wasm []byte
	var err error
	if r := code.GetRemote(); r != nil {
		wasm, err = pm.fetch.Fetch(ctx, r.GetHttpUri().GetUri(), r.GetSha256())
	} else {
		wasm, err = dataSource(code.GetLocal())
		if err == nil && cfg.CodeSHA256 == "" {
			cfg.CodeSHA256 = modulefetch.Sum(wasm)
		}
	}
	if err != nil {
		return nil, err
	}
	mod, err := pm.rt.Compile(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	cfg.HTTPCaller = pm.caller
	cfg.CallTimeout = pm.callTimeout
	cfg.PoolSize = pm.poolSize
	cfg.Logger = pm.log.With("filter", cfg.Name)
	cfg.Properties = pm.props
	// Tell guests the level the gateway logs at, so they skip building
	// messages nobody reads (formatting in a wasm guest is expensive).
	switch {
	case pm.log.Enabled(ctx, slog.LevelDebug):
		cfg.LogLevel = wasmhost.LogDebug
	case pm.log.Enabled(ctx, slog.LevelInfo):
		cfg.LogLevel = wasmhost.LogInfo
	default:
		cfg.LogLevel = wasmhost.LogWarn
	}
	p, err := pm.rt.NewPlugin(ctx, mod, cfg)
	if err != nil {
		return nil, &startUpError{err: fmt.Errorf("start: %w", err)}
	}
	return p, nil
}

// failing reports whether any filter's latest version is not running.
func (pm *pluginManager) failing() bool {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for _, st := range pm.status {
		if st.State != "running" {
			return true
		}
	}
	return false
}

// forget drops failure records so the next build retries the fetch.
func (pm *pluginManager) statuses() []filterStatus {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	out := make([]filterStatus, 0, len(pm.status))
	for _, st := range pm.status {
		out = append(out, *st)
	}
	return out
}

// unused returns the plugins that neither keep are referenced by nor are a
// last known good, and forgets them.
func (pm *pluginManager) unused(keep []*wasmhost.Plugin) []*wasmhost.Plugin {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	in := map[*wasmhost.Plugin]bool{}
	for _, p := range keep {
		in[p] = true
	}
	for _, p := range pm.lkg {
		in[p] = true
	}
	var out []*wasmhost.Plugin
	for k, p := range pm.byKey {
		if !in[p] {
			out = append(out, p)
			delete(pm.byKey, k)
		}
	}
	return out
}

// all returns every live plugin (for metrics).
func (pm *pluginManager) all() map[string]*wasmhost.Plugin {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	out := make(map[string]*wasmhost.Plugin, len(pm.byKey))
	for k, p := range pm.byKey {
		out[k] = p
	}
	return out
}

// closeAll closes every plugin and waits, until ctx ends, for the starts
// still running (they close what they start). It reports whether they all
// ended: only then may the wasm runtime be closed under them.
func (pm *pluginManager) closeAll(ctx context.Context) bool {
	pm.mu.Lock()
	pm.closed = true
	for k, p := range pm.byKey {
		p.Close()
		delete(pm.byKey, k)
	}
	pm.mu.Unlock()
	done := make(chan struct{})
	go func() { pm.jobs.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
