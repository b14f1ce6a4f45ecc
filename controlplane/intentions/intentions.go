// Package intentions reads Consul intentions (config entries of kind
// service-intentions) as a second source of access policy, watched with
// blocking queries, and merges them with the AccessPolicy documents.
//
// # Precedence
//
// Per destination service, an AccessPolicy document wins: when one selects a
// service, that service's intentions are ignored (and reported). A service
// without an AccessPolicy gets its intentions translated:
//
//   - a source "*" with action deny sets the default to deny (Consul's
//     "default deny" idiom); with action allow it becomes an allow rule for
//     every authenticated caller. Without a "*" source the default is allow
//     (a Consul dev agent's default), so only deny intentions refuse.
//   - a named source becomes a rule from that service (its Connect SPIFFE
//     id); a deny on a named source wins over an allow on "*", as Consul's
//     precedence (exact before wildcard) has it.
//   - L7 permissions become one rule per permission (methods, exact paths,
//     path prefixes ending in "/"). A permission this translation cannot
//     express exactly (a regex, a header, a prefix not ending in "/") is
//     made stricter, never looser: an allow is dropped, a deny covers the
//     whole source. Each such case is a warning.
//
// # Failure
//
// When Consul cannot be read, the last good set keeps enforcing; Status
// says how stale it is.
package intentions

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/ir"
)

// SourceName is the ir.AccessPolicy.Name of policies made from intentions.
const SourceName = "consul-intentions"

// Status is the watcher's state for /v1/status and metrics.
type Status struct {
	// Index is Consul's raft index of the set in force.
	Index uint64 `json:"index"`
	// Services counts destinations with intentions.
	Services int `json:"services"`
	// LastSuccess is when Consul last answered; zero before the first read.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Error is the latest read error; empty while reads succeed.
	Error string `json:"error,omitempty"`
	// Stale says the set in force may be out of date: the latest read
	// failed (the last good set keeps enforcing).
	Stale bool `json:"stale"`
	// Warnings are the translation's notes (stricter-than-written rules).
	Warnings []string `json:"warnings,omitempty"`
}

// Watcher keeps the intentions of a Consul agent, read by blocking queries.
type Watcher struct {
	client  *api.Client
	log     *slog.Logger
	wait    time.Duration
	changed chan struct{}

	mu       sync.Mutex
	policies []ir.AccessPolicy
	status   Status
	ready    bool
}

// NewWatcher returns a watcher of client's intentions. wait bounds each
// blocking query (zero: 5 minutes).
func NewWatcher(client *api.Client, log *slog.Logger, wait time.Duration) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	return &Watcher{client: client, log: log, wait: wait, changed: make(chan struct{}, 1)}
}

// Changed is signalled after every change of the set or of its staleness.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Policies returns the access policies translated from the intentions in
// force (the last good set when Consul cannot be read).
func (w *Watcher) Policies() []ir.AccessPolicy {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.policies
}

// Status returns the watcher's state.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.status
	st.Warnings = append([]string(nil), st.Warnings...)
	return st
}

func (w *Watcher) signal() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// Run watches until ctx ends. Failed reads back off from 200ms to 10s.
func (w *Watcher) Run(ctx context.Context) error {
	var index uint64
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: w.wait}).WithContext(ctx)
		entries, meta, err := w.client.ConfigEntries().List(api.ServiceIntentions, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.mu.Lock()
			wasStale := w.status.Stale
			w.status.Error, w.status.Stale = err.Error(), true
			w.mu.Unlock()
			if !wasStale {
				w.log.Warn("consul intentions unreadable; the last good set keeps enforcing", "err", err)
				w.signal()
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(backoff*2, 10*time.Second)
			index = 0
			continue
		}
		backoff = 200 * time.Millisecond
		policies, warnings := Translate(entries)
		w.mu.Lock()
		changedSet := !w.ready || meta.LastIndex != w.status.Index || w.status.Stale
		w.ready = true
		w.policies = policies
		w.status = Status{Index: meta.LastIndex, Services: len(policies), LastSuccess: time.Now(), Warnings: warnings}
		w.mu.Unlock()
		if changedSet {
			w.signal()
		}
		if meta.LastIndex < index {
			index = 0 // the index went backwards (a restored snapshot): start over
		} else {
			index = meta.LastIndex
		}
	}
	return nil
}

// Translate turns service-intentions config entries into access policies
// (sorted by service), with a warning for every rule made stricter than
// written.
func Translate(entries []api.ConfigEntry) ([]ir.AccessPolicy, []string) {
	var out []ir.AccessPolicy
	var warnings []string
	for _, e := range entries {
		si, ok := e.(*api.ServiceIntentionsConfigEntry)
		if !ok || si.Name == "" || si.Name == "*" {
			if ok && si.Name == "*" {
				warnings = append(warnings, "intentions for destination \"*\" are not translated: name each destination service")
			}
			continue
		}
		src := fmt.Sprintf("consul:service-intentions/%s", si.Name)
		p := ir.AccessPolicy{Service: si.Name, Name: SourceName, DefaultAllow: true, Source: src}
		sources := append([]*api.SourceIntention(nil), si.Sources...)
		sort.SliceStable(sources, func(i, j int) bool { return sources[i].Name < sources[j].Name })
		for _, s := range sources {
			if s == nil || s.Name == "" {
				continue
			}
			if s.Peer != "" || s.SamenessGroup != "" {
				warnings = append(warnings, fmt.Sprintf("%s: source %q from peer/sameness group is not translated", src, s.Name))
				continue
			}
			from := s.Name
			ruleBase := "intention-" + ruleName(s.Name)
			if s.Name == "*" {
				from = "*"
				ruleBase = "intention-any"
			}
			switch {
			case len(s.Permissions) > 0:
				for i, perm := range s.Permissions {
					r, exact := permissionRule(perm)
					r.Name = fmt.Sprintf("%s-%d", ruleBase, i)
					r.From, r.Source = []string{from}, src
					if !exact {
						if !r.Deny {
							warnings = append(warnings, fmt.Sprintf("%s: source %q permission %d cannot be expressed exactly (regex, header or a path prefix not ending in /): this allow is dropped", src, s.Name, i))
							continue
						}
						warnings = append(warnings, fmt.Sprintf("%s: source %q permission %d cannot be expressed exactly: this deny covers every request of %q", src, s.Name, i, s.Name))
						r.Methods, r.Paths = nil, nil
					}
					p.Rules = append(p.Rules, r)
				}
			case s.Action == api.IntentionActionDeny && s.Name == "*":
				p.DefaultAllow = false
			case s.Action == api.IntentionActionDeny:
				p.Rules = append(p.Rules, ir.AccessRule{Name: ruleBase, Deny: true, From: []string{from}, Source: src})
			case s.Action == api.IntentionActionAllow:
				p.Rules = append(p.Rules, ir.AccessRule{Name: ruleBase, From: []string{from}, Source: src})
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, warnings
}

func permissionRule(perm *api.IntentionPermission) (ir.AccessRule, bool) {
	r := ir.AccessRule{Deny: perm.Action == api.IntentionActionDeny}
	h := perm.HTTP
	if h == nil {
		return r, perm.JWT == nil
	}
	exact := perm.JWT == nil && h.PathRegex == "" && len(h.Header) == 0
	r.Methods = append([]string(nil), h.Methods...)
	switch {
	case h.PathExact != "":
		if strings.Contains(h.PathExact, "*") {
			exact = false
		}
		r.Paths = []string{h.PathExact}
	case h.PathPrefix != "":
		if !strings.HasSuffix(h.PathPrefix, "/") || strings.Contains(h.PathPrefix, "*") {
			exact = false
		}
		r.Paths = []string{h.PathPrefix + "**"}
	}
	return r, exact
}

// ruleName makes a rule name (lowercase letters, digits, '-') of a service.
func ruleName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// Merge returns ps with the intention policies of the services that have no
// AccessPolicy added (an AccessPolicy wins), and a note for every service
// whose intentions were set aside. ps is not modified.
func Merge(ps *ir.PolicySet, fromIntentions []ir.AccessPolicy) (*ir.PolicySet, []string) {
	if len(fromIntentions) == 0 {
		return ps, nil
	}
	if ps == nil {
		ps = &ir.PolicySet{}
	}
	out := *ps
	out.Access = append([]ir.AccessPolicy(nil), ps.Access...)
	have := map[string]string{}
	for _, p := range ps.Access {
		have[p.Service] = p.Source
	}
	var notes []string
	for _, p := range fromIntentions {
		if at, ok := have[p.Service]; ok {
			notes = append(notes, fmt.Sprintf("%s: ignored, the AccessPolicy at %s takes precedence for %q", p.Source, at, p.Service))
			continue
		}
		out.Access = append(out.Access, p)
	}
	sort.Slice(out.Access, func(i, j int) bool { return out.Access[i].Service < out.Access[j].Service })
	return &out, notes
}
