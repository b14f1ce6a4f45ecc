package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

// ErrNoLoader says the server was built without a policy loader.
var ErrNoLoader = errors.New("this control plane has no policy loader: start it through `meshwarden controlplane`")

// candidate parses and translates files without applying them.
func (s *Server) candidate(files map[string][]byte) (*ir.PolicySet, *translate.Shared, error) {
	if s.cfg.LoadPolicies == nil {
		return nil, nil, ErrNoLoader
	}
	cat := s.watcher.Catalog()
	ps, err := s.cfg.LoadPolicies(files, cat)
	if err != nil {
		return nil, nil, err
	}
	if ps == nil {
		return nil, nil, errors.New("policy loader returned no policy set")
	}
	if ps.Revision == "" {
		ps.Revision = policies.Revision(files)
	}
	shared, err := translate.Build(cat, s.withIntentions(ps), s.options())
	if err != nil {
		return nil, nil, err
	}
	if err := shared.Validate(); err != nil {
		return nil, nil, fmt.Errorf("generated resources fail Envoy validation: %w", err)
	}
	return ps, shared, nil
}

// TranslatePolicies returns, per connected node, the snapshot the candidate
// files would produce, without applying them (the policy CLI's diff).
func (s *Server) TranslatePolicies(files map[string][]byte) (map[string]*translate.Snapshot, []string, error) {
	_, shared, err := s.candidate(files)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	nodes := make(map[string]*nodeState, len(s.nodes))
	for id, ns := range s.nodes {
		nodes[id] = ns
	}
	s.mu.Unlock()
	out := map[string]*translate.Snapshot{}
	for id, ns := range nodes {
		if ns.err != nil {
			continue
		}
		snap, err := shared.ForNode(ns.tnode, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s: %w", id, err)
		}
		if err := snap.Validate(); err != nil {
			return nil, nil, fmt.Errorf("node %s: generated resources fail validation: %w", id, err)
		}
		out[id] = snap
	}
	return out, shared.Warnings, nil
}

// ApplyPolicies validates files and, only if the whole set is good, swaps
// it in and republishes. On error nothing changes and the error (with the
// loader's diagnostics) is recorded as the last rejection.
func (s *Server) ApplyPolicies(ctx context.Context, files map[string][]byte) (*ir.PolicySet, []string, error) {
	return s.ApplyPoliciesFrom(ctx, files, "api", "")
}

// ApplyPoliciesFrom is ApplyPolicies with the set's origin and sender, which
// the change record keeps.
func (s *Server) ApplyPoliciesFrom(ctx context.Context, files map[string][]byte, source, identity string) (*ir.PolicySet, []string, error) {
	return s.ApplyPoliciesIf(ctx, files, source, identity, "")
}

// ApplyPoliciesIf is ApplyPoliciesFrom that applies only if the revision in
// force is ifRevision ("" skips the check), so what an operator previewed is
// what they replace. With a policy store the set is first written there
// (check-and-set); a *policystore.ConflictError or
// policystore.ErrUnavailable leaves everything as it was.
func (s *Server) ApplyPoliciesIf(ctx context.Context, files map[string][]byte, source, identity, ifRevision string) (*ir.PolicySet, []string, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	ps, shared, err := s.candidate(files)
	if err != nil {
		s.m.policyRejections.Inc()
		s.mu.Lock()
		s.rejectLocked(Rejection{Kind: "policy", Error: err.Error()})
		s.mu.Unlock()
		s.log.Error("policy set rejected; the last good set keeps serving", "err", err)
		return nil, nil, err
	}
	if ifRevision != "" {
		if cur := s.PolicyRevision(); cur != ifRevision {
			return nil, nil, &policystore.ConflictError{Current: &policystore.Set{Revision: cur}}
		}
	}
	if s.cfg.Store != nil {
		if err := s.storePut(ctx, ps, files, source, identity, ifRevision); err != nil {
			s.log.Error("policy set not applied: the policy store refused it; the last good set keeps serving", "revision", ps.Revision, "err", err)
			return nil, nil, err
		}
	}
	s.swap(ctx, ps, files, source, identity)
	return ps, shared.Warnings, nil
}

// swap puts ps in force, records the change and republishes.
func (s *Server) swap(ctx context.Context, ps *ir.PolicySet, files map[string][]byte, source, identity string) {
	s.mu.Lock()
	prev, prevFiles := "", s.policyFiles
	if s.policy != nil {
		prev = s.policy.Revision
	}
	s.policy = ps
	s.policyFiles = files
	s.awaitPolicies = false
	s.mu.Unlock()
	s.log.Info("policy set applied", "revision", ps.Revision, "files", len(files), "source", source)
	if s.cfg.RecordChange != nil && prev != ps.Revision {
		c := PolicyChange{Set: ps, Previous: prev, Before: prevFiles, After: files, Source: source, Identity: identity}
		if err := s.cfg.RecordChange(ctx, c); err != nil {
			s.log.Error("could not record the policy change; the set stays applied", "revision", ps.Revision, "err", err)
		}
	}
	if s.cfg.OnPolicy != nil {
		if err := s.cfg.OnPolicy(ps); err != nil {
			s.log.Error("policy hook failed; the set stays applied", "revision", ps.Revision, "err", err)
		}
	}
	s.rebuild(ctx)
}

// PolicyRevision is the revision of the policy set in force ("" if none).
func (s *Server) PolicyRevision() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policy == nil {
		return ""
	}
	return s.policy.Revision
}

// watchPolicyDir polls the policy directory and applies it when its
// content hash changes. A rejected content is retried only when what it
// was judged against changes, not on every poll: the module builds (a set
// naming a filter that was not built yet becomes valid once it is) or the
// Consul catalog (a canary whose subsets no instance carried yet becomes
// valid once the instances register — a plane started before its services
// would otherwise keep the set rejected until someone edits a file).
func (s *Server) watchPolicyDir(ctx context.Context, every time.Duration) {
	last, lastModules, failed := "", "", false
	var lastIndex uint64
	modulesKey := func() string {
		if s.cfg.Modules == nil {
			return ""
		}
		sums := s.cfg.Modules.SHA256s()
		keys := make([]string, 0, len(sums))
		for k, v := range sums {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		return strings.Join(keys, ",")
	}
	if s.cfg.Store != nil {
		select { // push against what the store holds, not against nothing
		case <-s.storeLoaded:
		case <-ctx.Done():
			return
		}
	}
	check := func() {
		files, err := policies.ReadDir(s.cfg.PolicyDir) // the files the policy CLI sends, so revisions agree
		if err != nil {
			s.log.Warn("policy dir unreadable; keeping the current set", "err", err)
			return
		}
		rev, mods, index := policies.Revision(files), modulesKey(), s.watcher.Status().Index
		if rev == last && !(failed && (mods != lastModules || index != lastIndex)) {
			return
		}
		last, lastModules, lastIndex = rev, mods, index
		_, _, err = s.ApplyPoliciesFrom(ctx, files, "policy-dir "+s.cfg.PolicyDir, "")
		failed = err != nil
		if errors.Is(err, policystore.ErrConflict) || errors.Is(err, policystore.ErrUnavailable) {
			last = "" // not a verdict on the files: push again on the next poll
		}
	}
	check()
	lifecycle.Every(ctx, every, check)
}
