package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
// reused while its config is unchanged. When a new version fails to fetch,
// verify or start, the last known good plugin of that filter keeps running;
// without one, the filter's fail policy decides (fail open: skipped; fail
// closed: the listener answers 503). Every outcome is recorded for
// /config_dump and the metrics.
type pluginManager struct {
	rt      *wasmhost.Runtime
	fetch   *modulefetch.Fetcher
	caller  wasmhost.HTTPCaller
	log     *slog.Logger
	props   map[string][]byte
	onError func(filter string)

	mu     sync.Mutex
	byKey  map[string]*wasmhost.Plugin
	lkg    map[string]*wasmhost.Plugin // filter name → last known good
	status map[string]*filterStatus
}

type filterStatus struct {
	Name       string    `json:"name"`
	SHA256     string    `json:"sha256,omitempty"`
	State      string    `json:"state"` // running, last_known_good, fail_open_skipped, fail_closed
	LastError  string    `json:"last_error,omitempty"`
	ErrorAt    time.Time `json:"error_at,omitzero"`
	RunningSHA string    `json:"running_sha256,omitempty"`
	// CallDeadline says whether the running module's callbacks are bounded
	// (false for modules the operator trusted with --wasm-trusted-*).
	CallDeadline *bool `json:"call_deadline,omitempty"`
}

func newPluginManager(rt *wasmhost.Runtime, f *modulefetch.Fetcher, caller wasmhost.HTTPCaller, log *slog.Logger, props map[string][]byte, onError func(string)) *pluginManager {
	return &pluginManager{rt: rt, fetch: f, caller: caller, log: log, props: props, onError: onError,
		byKey: map[string]*wasmhost.Plugin{}, lkg: map[string]*wasmhost.Plugin{}, status: map[string]*filterStatus{}}
}

func configKey(name string, w *wasmfilter.Wasm) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(w)
	s := sha256.Sum256(b)
	return name + "/" + hex.EncodeToString(s[:])
}

// resolve returns the plugin to run for filter name, or nil and whether the
// filter fails closed.
func (pm *pluginManager) resolve(ctx context.Context, name string, w *wasmfilter.Wasm) (*wasmhost.Plugin, bool) {
	key := configKey(name, w)
	pm.mu.Lock()
	if p := pm.byKey[key]; p != nil {
		pm.lkg[name] = p
		// Back on a build that runs (e.g. a release rolled back after a
		// broken one): the status says so again.
		if st := pm.status[name]; st != nil && st.State != "running" {
			if cfg, err := wasmhost.PluginConfigFromProto(w.GetConfig()); err == nil {
				st.SHA256, st.State, st.LastError, st.RunningSHA = cfg.CodeSHA256, "running", "", cfg.CodeSHA256
			}
		}
		pm.mu.Unlock()
		return p, false
	}
	pm.mu.Unlock()
	cfg, err := wasmhost.PluginConfigFromProto(w.GetConfig())
	wantSHA := cfg.CodeSHA256
	var p *wasmhost.Plugin
	if err == nil {
		p, err = pm.start(ctx, w, cfg)
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	st := getOrAdd(pm.status, name, func() *filterStatus { return &filterStatus{Name: name} })
	st.SHA256 = wantSHA
	if err == nil {
		pm.byKey[key] = p
		pm.lkg[name] = p
		st.State, st.LastError, st.RunningSHA = "running", "", wantSHA
		deadline := p.Module().CallDeadline()
		st.CallDeadline = &deadline
		return p, false
	}
	st.LastError, st.ErrorAt = err.Error(), time.Now()
	pm.log.Error("wasm filter unavailable", "filter", name, "sha256", wantSHA, "err", err)
	if pm.onError != nil {
		pm.onError(name)
	}
	if old := pm.lkg[name]; old != nil {
		st.State = "last_known_good"
		return old, false
	}
	st.RunningSHA, st.CallDeadline = "", nil
	if cfg.FailOpen {
		st.State = "fail_open_skipped"
		return nil, false
	}
	st.State = "fail_closed"
	return nil, true
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
		return nil, fmt.Errorf("start: %w", err)
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

func (pm *pluginManager) closeAll() {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for k, p := range pm.byKey {
		p.Close()
		delete(pm.byKey, k)
	}
}
