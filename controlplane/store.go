package controlplane

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/ir"
)

// StoreStatus is the policy store's part of GET /v1/status.
type StoreStatus struct {
	Key       string    `json:"key"`
	Seq       uint64    `json:"seq,omitempty"`
	Revision  string    `json:"revision,omitempty"`
	AppliedBy string    `json:"applied_by,omitempty"`
	Replica   string    `json:"replica,omitempty"`
	Time      time.Time `json:"time,omitzero"`
	// Error is why the stored set is not in force here (unreachable store,
	// a set of a newer schema, a set this replica rejects).
	Error string `json:"error,omitempty"`
}

// storePut writes ps to the store against the set this replica last saw.
func (s *Server) storePut(ctx context.Context, ps *ir.PolicySet, files map[string][]byte, source, identity, ifRevision string) error {
	s.mu.Lock()
	base := s.storeSet
	s.mu.Unlock()
	rev := ps.Revision
	if base != nil && base.Revision == rev {
		return nil // already stored (e.g. the policy dir of every replica)
	}
	if ifRevision != "" && (base == nil || base.Revision != ifRevision) {
		return &policystore.ConflictError{Current: base}
	}
	fs := make(map[string]string, len(files))
	for n, c := range files {
		fs[n] = string(c)
	}
	put, err := s.cfg.Store.Put(ctx, &policystore.Set{Revision: rev, Files: fs, AppliedBy: identity, Source: source,
		Replica: s.cfg.Replica, Time: time.Now().UTC()}, base)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.storeSet == nil || put.Index > s.storeSet.Index {
		s.storeSet = put
	}
	s.storeErr = ""
	s.mu.Unlock()
	return nil
}

// watchStore follows the stored set and puts every new one in force here,
// so every replica serves the same set.
func (s *Server) watchStore(ctx context.Context) {
	var index uint64
	attempt := 0
	loaded := false
	for ctx.Err() == nil {
		set, next, err := s.cfg.Store.Watch(ctx, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, policystore.ErrNewerSchema) {
			s.mu.Lock()
			s.storeErr = err.Error()
			s.mu.Unlock()
			s.log.Warn("policy store unreadable; the set in force keeps serving", "err", err)
			index = 0
			if !lifecycle.Sleep(ctx, backoffDelay(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		index = next
		if err != nil { // a newer release wrote it: keep what we serve
			s.mu.Lock()
			s.storeErr = err.Error()
			s.rejectLocked(Rejection{Kind: "policy", Error: "stored " + err.Error()})
			s.mu.Unlock()
			s.m.policyRejections.Inc()
			s.log.Error("stored policy set refused; the last good set keeps serving", "err", err)
		} else {
			s.storeSeen(ctx, set)
		}
		if !loaded {
			loaded = true
			close(s.storeLoaded)
		}
	}
}

// storeSeen records set as the store's state and puts it in force if it
// is not already.
func (s *Server) storeSeen(ctx context.Context, set *policystore.Set) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if set != nil && (s.storeSet == nil || set.Index >= s.storeSet.Index) {
		s.storeSet = set
	}
	s.storeErr = ""
	current := ""
	if s.policy != nil {
		current = s.policy.Revision
	}
	if set == nil && s.cfg.PolicyDir == "" && s.awaitPolicies {
		s.awaitPolicies = false // nothing stored and nothing to load: serve Consul alone
		s.mu.Unlock()
		s.rebuild(ctx)
		return
	}
	s.mu.Unlock()
	if set == nil || set.Revision == current {
		return
	}
	ps, _, err := s.candidate(set.FileBytes())
	if err != nil {
		s.m.policyRejections.Inc()
		s.mu.Lock()
		s.storeErr = "stored revision " + set.Revision + " refused: " + err.Error()
		s.rejectLocked(Rejection{Kind: "policy", Error: s.storeErr})
		s.mu.Unlock()
		s.log.Error("stored policy set refused; the last good set keeps serving", "revision", set.Revision, "err", err)
		return
	}
	s.swap(ctx, ps, set.FileBytes(), "store #"+strconv.FormatUint(set.Seq, 10)+" from "+orUnknown(set.Replica), set.AppliedBy)
}

func (s *Server) storeStatusLocked() *StoreStatus {
	if s.cfg.Store == nil {
		return nil
	}
	st := &StoreStatus{Key: s.cfg.Store.Key(), Error: s.storeErr}
	if set := s.storeSet; set != nil {
		st.Seq, st.Revision, st.AppliedBy, st.Replica, st.Time = set.Seq, set.Revision, set.AppliedBy, set.Replica, set.Time
	}
	return st
}

func backoffDelay(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 7)
	return min(d, 5*time.Second)
}

func orUnknown(s string) string {
	if s == "" {
		return "an unnamed replica"
	}
	return s
}
