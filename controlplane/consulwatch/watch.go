// Package consulwatch keeps an ir.Catalog in step with Consul using
// blocking queries: one on the service list, one per service on its health
// entries. Errors back off exponentially with full jitter; during an outage
// the last catalog stays available and Status reports how stale it is.
package consulwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/ir"
)

// Options configure a Watcher. Zero values mean the defaults.
type Options struct {
	// WaitTime bounds each blocking query (default 5m, Consul's maximum is 10m).
	WaitTime time.Duration
	// BackoffBase and BackoffMax bound the retry delay after an error
	// (defaults 50ms and 5s); each delay is drawn uniformly from [0, d).
	BackoffBase, BackoffMax time.Duration
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// Status says how current the catalog is.
type Status struct {
	// Index is the highest Consul index seen.
	Index uint64 `json:"index"`
	// Synced is true once the service list and every service's health
	// have been read at least once.
	Synced bool `json:"synced"`
	// LastContact is when Consul last answered.
	LastContact time.Time `json:"last_contact"`
	// Stale is true while Consul is failing, or silent for longer than a
	// blocking query can last (a hung agent answers nothing and fails
	// nothing); Staleness is then the time since LastContact (zero when
	// not stale).
	Stale     bool          `json:"stale"`
	Staleness time.Duration `json:"staleness_ns"`
	LastError string        `json:"last_error,omitempty"`
}

// Watcher watches Consul. Create it with New, run it with Run.
type Watcher struct {
	client  *api.Client
	opts    Options
	changed chan struct{}

	mu       sync.Mutex
	services map[string]*serviceState
	index    uint64
	contact  time.Time
	failing  map[string]error // by query ("catalog" or service name)
	listed   bool
}

type serviceState struct {
	instances []ir.Instance
	synced    bool
	cancel    context.CancelFunc
	done      chan struct{}
}

// New returns a watcher on client.
func New(client *api.Client, opts Options) *Watcher {
	if opts.WaitTime == 0 {
		opts.WaitTime = 5 * time.Minute
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase = 50 * time.Millisecond
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		client:   client,
		opts:     opts,
		changed:  make(chan struct{}, 1),
		services: map[string]*serviceState{},
		failing:  map[string]error{},
	}
}

// Changed is signalled (coalesced) whenever the catalog changes.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

func (w *Watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// Catalog returns a copy of the current catalog.
func (w *Watcher) Catalog() *ir.Catalog {
	w.mu.Lock()
	defer w.mu.Unlock()
	cat := &ir.Catalog{Index: w.index, Services: make(map[string]*ir.Service, len(w.services))}
	for name, st := range w.services {
		cat.Services[name] = &ir.Service{Name: name, Instances: st.instances}
	}
	return cat
}

// Status reports index, sync state and staleness.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{Index: w.index, LastContact: w.contact, Synced: w.listed}
	for _, st := range w.services {
		if !st.synced {
			s.Synced = false
		}
	}
	if len(w.failing) > 0 {
		s.Stale = true
		if !w.contact.IsZero() {
			s.Staleness = time.Since(w.contact)
		}
		keys := slices.Sorted(maps.Keys(w.failing))
		s.LastError = keys[0] + ": " + w.failing[keys[0]].Error()
	}
	// Every blocking query returns within WaitTime plus Consul's jitter
	// (WaitTime/16), so a longer silence means an agent that accepts
	// connections but does not answer.
	if quiet := time.Since(w.contact); !w.contact.IsZero() && quiet > w.maxQuiet() {
		s.Stale, s.Staleness = true, quiet
		if s.LastError == "" {
			s.LastError = fmt.Sprintf("no answer from Consul for %s (a blocking query lasts at most %s): the agent may be hung", quiet.Round(time.Second), w.opts.WaitTime+w.opts.WaitTime/16)
		}
	}
	return s
}

// maxQuiet is the longest silence a healthy agent can keep.
func (w *Watcher) maxQuiet() time.Duration {
	return w.opts.WaitTime + w.opts.WaitTime/16 + 2*time.Second
}

// queryContext bounds one blocking query, so a hung agent (or a dead TCP
// peer) turns into an error and a retry instead of a wait without end.
func (w *Watcher) queryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, w.maxQuiet()+w.opts.WaitTime/4)
}

func (w *Watcher) ok(query string, index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.contact = time.Now()
	delete(w.failing, query)
	if index > w.index {
		w.index = index
	}
}

func (w *Watcher) fail(query string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failing[query] = err
}

// backoff sleeps a jittered exponential delay for attempt; false if ctx ended.
func (w *Watcher) backoff(ctx context.Context, attempt int) bool {
	d := w.opts.BackoffBase << min(attempt, 16)
	if d > w.opts.BackoffMax || d <= 0 {
		d = w.opts.BackoffMax
	}
	return lifecycle.Sleep(ctx, rand.N(d)+time.Millisecond)
}

// Run watches until ctx ends; it returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.stopAll()
	var index uint64
	attempt := 0
	for ctx.Err() == nil {
		qctx, cancel := w.queryContext(ctx)
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: w.opts.WaitTime}).WithContext(qctx)
		names, meta, err := w.client.Catalog().Services(q)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.fail("catalog", err)
			w.opts.Log.Warn("consul catalog query failed; serving the last catalog", "err", err, "attempt", attempt)
			// Resync with a non-blocking query once Consul answers again: a
			// blocking query on the old index would hang until something
			// changes, leaving the failure (and staleness) reported.
			index = 0
			if !w.backoff(ctx, attempt) {
				break
			}
			attempt++
			continue
		}
		attempt = 0
		w.ok("catalog", meta.LastIndex)
		if meta.LastIndex < index {
			index = 0 // the index went backwards (snapshot restore): start over
		} else {
			index = meta.LastIndex
		}
		w.reconcile(ctx, names)
	}
	return ctx.Err()
}

// reconcile starts a health watch per new service and stops removed ones.
func (w *Watcher) reconcile(ctx context.Context, names map[string][]string) {
	w.mu.Lock()
	changed := false
	for name := range names {
		if _, ok := w.services[name]; ok {
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		st := &serviceState{cancel: cancel, done: make(chan struct{})}
		w.services[name] = st
		go w.watchService(sctx, name, st)
	}
	for name, st := range w.services {
		if _, ok := names[name]; !ok {
			st.cancel()
			delete(w.services, name)
			delete(w.failing, name)
			changed = true
		}
	}
	w.listed = true
	w.mu.Unlock()
	if changed {
		w.notify()
	}
}

func (w *Watcher) stopAll() {
	w.mu.Lock()
	var done []chan struct{}
	for _, st := range w.services {
		st.cancel()
		done = append(done, st.done)
	}
	w.mu.Unlock()
	for _, d := range done {
		<-d
	}
}

// watchService keeps one service's instances current.
func (w *Watcher) watchService(ctx context.Context, name string, st *serviceState) {
	defer close(st.done)
	var index uint64
	attempt := 0
	for ctx.Err() == nil {
		qctx, cancel := w.queryContext(ctx)
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: w.opts.WaitTime}).WithContext(qctx)
		entries, meta, err := w.client.Health().Service(name, "", false, q)
		cancel()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return
			}
			w.fail(name, err)
			index = 0 // resync without blocking once Consul answers (see Run)
			if !w.backoff(ctx, attempt) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		w.ok(name, meta.LastIndex)
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		ins := toInstances(entries)
		w.mu.Lock()
		if cur, ok := w.services[name]; !ok || cur != st {
			w.mu.Unlock()
			return // removed meanwhile
		}
		changed := !st.synced || !reflect.DeepEqual(st.instances, ins)
		st.instances = ins
		st.synced = true
		w.mu.Unlock()
		if changed {
			w.notify()
		}
	}
}

// toInstances converts health entries, sorted by ID for stable output.
func toInstances(entries []*api.ServiceEntry) []ir.Instance {
	out := make([]ir.Instance, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		in := ir.Instance{
			ID:      e.Service.ID,
			Address: addr,
			Port:    e.Service.Port,
			Tags:    append([]string(nil), e.Service.Tags...),
			Meta:    maps.Clone(e.Service.Meta),
			Healthy: e.Checks.AggregatedStatus() == api.HealthPassing,
		}
		if e.Node != nil {
			in.Node, in.Datacenter, in.NodeMeta = e.Node.Node, e.Node.Datacenter, maps.Clone(e.Node.Meta)
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Node < out[j].Node
	})
	return out
}
