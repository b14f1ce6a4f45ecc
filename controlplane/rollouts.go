package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/ir"
)

// DefaultRolloutPrefix is the Consul KV prefix of rollout state.
const DefaultRolloutPrefix = "meshwarden/rollouts"

// RolloutOptions configures the rollout controller, which runs every
// Rollout policy of the set in force.
type RolloutOptions struct {
	// Querier asks Prometheus (rollout.NewPrometheus). Nil: every analysis
	// is inconclusive ("no Prometheus configured"), so rollouts pause.
	Querier rollout.Querier
	// KVPrefix is where each rollout's state lives in Consul KV, so a
	// restarted plane (or another replica) resumes it (default
	// DefaultRolloutPrefix).
	KVPrefix string
	// Tick is how often rollouts are advanced (default 250ms); analyses
	// still run once per their interval.
	Tick time.Duration
	// Record, if set, receives every decision after it is stored: the
	// plane's signed change log hangs here. An error is logged.
	Record func(ctx context.Context, e RolloutEvent) error
	// Notify, if set, is called on a rollback or an escalation of a
	// rollout whose policy names a webhook (the plane POSTs the event).
	Notify func(ctx context.Context, url string, e RolloutEvent) error
	// Disabled turns the controller off (no Rollout is run).
	Disabled bool
}

// RolloutEvent is one decision of one rollout, with its evidence.
type RolloutEvent struct {
	Rollout  string           `json:"rollout"`
	Target   string           `json:"target"`
	Identity string           `json:"identity"` // "controlplane" or the operator
	Decision rollout.Decision `json:"decision"`
	Phase    rollout.Phase    `json:"phase"`
	// Revision is the policy set in force when the decision was taken.
	Revision string `json:"revision,omitempty"`
}

// RolloutRecord is a rollout's persisted state (Consul KV, JSON): what
// GET /v1/rollouts shows.
type RolloutRecord struct {
	Name string `json:"name"`
	// Target is CanaryRoute/<service> or FilterRelease/<filter>.
	Target string `json:"target"`
	// Generation hashes the Rollout policy; a new generation is a new
	// rollout.
	Generation string        `json:"generation"`
	Spec       rollout.Spec  `json:"spec"`
	State      rollout.State `json:"state"`
	// Override is the share the rollout applies to its target (nil: the
	// policy's own). Base fingerprints the target as the policy files
	// define it; when the files change it, a person took over.
	Override *int   `json:"override,omitempty"`
	Base     string `json:"base"`
	// Note says why a new generation was not started, or that the
	// policy document is gone.
	Note    string             `json:"note,omitempty"`
	Started time.Time          `json:"started"`
	Updated time.Time          `json:"updated"`
	History []rollout.Decision `json:"history,omitempty"`
	// StableSubset keeps the rest of a CanaryRoute's traffic.
	StableSubset string `json:"stableSubset,omitempty"`
	// Source is the policy's file:line.
	Source string `json:"source,omitempty"`

	index uint64 // Consul ModifyIndex when read (check-and-set)
	rule  ir.Rollout
}

// kvTimeout bounds every Consul KV call of the controller: a hung agent
// delays rollouts, it does not stop them for good.
const kvTimeout = 5 * time.Second

// maxHistory bounds the decisions kept per record (the change log keeps
// them all).
const maxHistory = 200

type rolloutController struct {
	s    *Server
	opts RolloutOptions
	kv   *api.KV

	// runMu serialises ticks and operator commands.
	runMu sync.Mutex
	mu    sync.Mutex
	// committed are the records as last stored: the overlay reads them.
	committed map[string]*RolloutRecord
	// loaded: the records were read at least once (a set without Rollout
	// documents and no records needs no further reads).
	loaded bool

	decisions *prometheus.CounterVec
}

func newRolloutController(s *Server, o RolloutOptions) *rolloutController {
	if o.KVPrefix == "" {
		o.KVPrefix = DefaultRolloutPrefix
	}
	o.KVPrefix = strings.TrimSuffix(o.KVPrefix, "/")
	if o.Tick <= 0 {
		o.Tick = 250 * time.Millisecond
	}
	if o.Querier == nil {
		o.Querier = noPrometheus{}
	}
	c := &rolloutController{s: s, opts: o, kv: s.cfg.Consul.KV(), committed: map[string]*RolloutRecord{},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_rollout_decisions_total",
			Help: "Rollout decisions, by rollout, action (start, step, analysis, pause, rollback, healthy, escalate, promote, abort, refuse) and analysis result.",
		}, []string{"rollout", "action", "result"}),
	}
	s.cfg.Registry.MustRegister(c.decisions, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshwarden_controlplane_rollouts_escalated",
		Help: "Rollouts rolled back whose health did not return (a person must look); the alert MeshwardenRolloutEscalated fires on it.",
	}, func() float64 { return c.count(rollout.Escalated) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshwarden_controlplane_rollouts_paused",
		Help: "Rollouts paused (Prometheus unanswered, a manual edit, a failed write): they wait for meshwarden rollout promote or abort.",
	}, func() float64 { return c.count(rollout.Paused) }))
	return c
}

func (c *rolloutController) count(p rollout.Phase) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.committed {
		if r.State.Phase == p {
			n++
		}
	}
	return float64(n)
}

type noPrometheus struct{}

func (noPrometheus) Query(context.Context, string) ([]float64, error) {
	return nil, errors.New("no Prometheus configured: start the plane with --prometheus-url")
}

// preload reads the stored records before the plane publishes anything,
// so a restarted plane serves the rollouts' shares from its first
// snapshot on (not the files' split for a moment).
func (c *rolloutController) preload(ctx context.Context) {
	recs, err := c.load(ctx)
	if err != nil {
		c.s.log.Warn("rollout state unreadable at start; rollouts resume once Consul KV answers", "err", err)
		return
	}
	c.replaceCommitted(recs)
}

// run advances every rollout each Tick until ctx ends.
func (c *rolloutController) run(ctx context.Context) {
	c.tick(ctx, time.Now())
	lifecycle.Every(ctx, c.opts.Tick, func() { c.tick(ctx, time.Now()) })
}

func (c *rolloutController) key(name string) string { return c.opts.KVPrefix + "/" + name }

// load reads every record from Consul KV.
func (c *rolloutController) load(ctx context.Context) (map[string]*RolloutRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	pairs, _, err := c.kv.List(c.opts.KVPrefix+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read rollout state from Consul KV %s/: %w", c.opts.KVPrefix, err)
	}
	out := map[string]*RolloutRecord{}
	for _, p := range pairs {
		var r RolloutRecord
		if err := json.Unmarshal(p.Value, &r); err != nil {
			c.s.log.Error("rollout record unreadable; skipped", "key", p.Key, "err", err)
			continue
		}
		r.index = p.ModifyIndex
		out[r.Name] = &r
	}
	return out, nil
}

// store writes r with check-and-set against the index it was read at; it
// reports false when another writer (a replica, a command) won.
func (c *rolloutController) store(ctx context.Context, r *RolloutRecord) (bool, error) {
	if len(r.History) > maxHistory {
		r.History = r.History[len(r.History)-maxHistory:]
	}
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	ok, _, err := c.kv.CAS(&api.KVPair{Key: c.key(r.Name), Value: b, ModifyIndex: r.index}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("write rollout state to Consul KV: %w", err)
	}
	return ok, nil
}

// tick reconciles the Rollout policies in force with the stored records
// and advances each.
func (c *rolloutController) tick(ctx context.Context, now time.Time) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	ps, ready := c.s.policyReady()
	if !ready {
		// No policy set in force yet (a plane starting): every stored
		// rollout would look removed. Serve the stored shares, wait.
		if recs, err := c.load(ctx); err == nil {
			c.replaceCommitted(recs)
		}
		return
	}
	c.mu.Lock()
	idle := c.loaded && len(c.committed) == 0 && (ps == nil || len(ps.Rollouts) == 0)
	c.mu.Unlock()
	if idle {
		return
	}
	recs, err := c.load(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.s.log.Warn("rollouts not advanced: their state is unreadable", "err", err)
		}
		return
	}
	c.replaceCommitted(recs)
	inSet := map[string]bool{}
	if ps != nil {
		for _, rule := range ps.Rollouts {
			inSet[rule.Name] = true
			c.advance(ctx, now, ps, rule, recs)
		}
	}
	for name, r := range recs {
		if !inSet[name] {
			c.removed(ctx, now, r)
		}
	}
}

func (c *rolloutController) replaceCommitted(recs map[string]*RolloutRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := overridesKey(c.committed)
	// Copies: the tick changes its records before committing them.
	c.committed, c.loaded = make(map[string]*RolloutRecord, len(recs)), true
	for n, r := range recs {
		cp := *r
		c.committed[n] = &cp
	}
	if overridesKey(recs) != before {
		c.s.Kick()
	}
}

func overridesKey(recs map[string]*RolloutRecord) string {
	var parts []string
	for _, r := range recs {
		if r.Override != nil {
			parts = append(parts, fmt.Sprintf("%s=%d@%s", r.Target, *r.Override, r.Base))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// generation hashes a Rollout policy (its source line excluded).
func generation(r ir.Rollout) string {
	r.Source = ""
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func targetOf(r ir.Rollout) string {
	if r.Filter != "" {
		return "FilterRelease/" + r.Filter
	}
	return "CanaryRoute/" + r.Service
}

// commit stores r and, if it won, publishes its new decisions and the
// overlay. ds are the decisions taken since r was read.
func (c *rolloutController) commit(ctx context.Context, r *RolloutRecord, ds []rollout.Decision, who string) error {
	r.Updated = time.Now().UTC()
	r.History = append(r.History, ds...)
	ok, err := c.store(ctx, r)
	if err != nil {
		c.s.log.Error("rollout state not stored; the decision is retried on the next tick", "rollout", r.Name, "err", err)
		return err
	}
	if !ok {
		return fmt.Errorf("rollout %s changed meanwhile (another replica or command): retry", r.Name)
	}
	c.mu.Lock()
	prev := c.committed[r.Name]
	cp := *r
	c.committed[r.Name] = &cp
	c.mu.Unlock()
	if prev == nil || !sameOverride(prev, r) {
		c.s.Kick()
	}
	for _, d := range ds {
		c.emit(ctx, r, d, who)
	}
	return nil
}

func sameOverride(a, b *RolloutRecord) bool {
	if (a.Override == nil) != (b.Override == nil) {
		return false
	}
	return a.Base == b.Base && (a.Override == nil || *a.Override == *b.Override)
}

// emit logs a decision, records it in the change log and calls the
// webhook on rollback and escalation.
func (c *rolloutController) emit(ctx context.Context, r *RolloutRecord, d rollout.Decision, who string) {
	ev := RolloutEvent{Rollout: r.Name, Target: r.Target, Identity: who, Decision: d, Phase: r.State.Phase, Revision: c.s.PolicyRevision()}
	attrs := []any{"rollout", r.Name, "target", r.Target, "action", d.Action, "step", d.Step, "weight", d.Weight, "by", who}
	if d.Result != "" {
		attrs = append(attrs, "result", d.Result)
	}
	for _, x := range d.Evidence {
		attrs = append(attrs, "evidence", fmt.Sprintf("%s: %s = %g (want %s) %s %s", x.Metric, x.Query, x.Value, x.Threshold, x.Result, x.Error))
	}
	if d.Reason != "" {
		attrs = append(attrs, "reason", d.Reason)
	}
	c.s.log.Info("rollout decision", attrs...)
	c.decisions.WithLabelValues(r.Name, d.Action, d.Result).Inc()
	if c.opts.Record != nil {
		if err := c.opts.Record(ctx, ev); err != nil {
			c.s.log.Error("rollout decision not recorded in the change log", "rollout", r.Name, "err", err)
		}
	}
	if (d.Action == "rollback" || d.Action == "escalate") && r.rule.Webhook != "" && c.opts.Notify != nil {
		if err := c.opts.Notify(ctx, r.rule.Webhook, ev); err != nil {
			c.s.log.Error("rollout webhook failed", "rollout", r.Name, "action", d.Action, "err", err)
		}
	}
}
