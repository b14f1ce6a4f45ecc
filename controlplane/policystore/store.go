// Package policystore keeps the applied policy set in Consul KV, where
// every control plane replica reads it, so any number of replicas serve
// the same configuration and any of them can apply a new set.
//
// Layout under the prefix (default "meshwarden/policy"):
//
//	current            the set in force (JSON Set)
//	history/<seq>      every set ever applied, seq zero-padded, hash-chained
//
// An apply is one Consul transaction: check-and-set of current against the
// index the writer read, plus the new history entry (which must not
// exist). Two concurrent applies therefore cannot both win: Consul's Raft
// log orders them and the second fails its check and is told to retry.
// There is no leader among the replicas and so no split brain: the only
// state is in Consul, whose servers agree through Raft (see
// docs/RATIONALE-controlplane.md).
package policystore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Schema is the version of Set this binary reads and writes. A replica
// refuses a stored set of a higher schema (written by a newer release)
// and keeps serving what it has.
const Schema = 1

// DefaultPrefix is the KV prefix of the store.
const DefaultPrefix = "meshwarden/policy"

// ErrConflict says the store changed since the writer read it.
var ErrConflict = errors.New("the policy set changed meanwhile")

// ErrUnavailable says the store could not be read or written: nothing was
// applied.
var ErrUnavailable = errors.New("the policy store (Consul KV) is unavailable")

// Set is one applied policy set.
type Set struct {
	Schema    int               `json:"schema"`
	Seq       uint64            `json:"seq"`
	Revision  string            `json:"revision"`
	Previous  string            `json:"previous,omitempty"`
	Files     map[string]string `json:"files"`
	AppliedBy string            `json:"applied_by"`
	Source    string            `json:"source"`
	Replica   string            `json:"replica,omitempty"`
	Time      time.Time         `json:"time"`
	PrevHash  string            `json:"prev_hash,omitempty"`
	Hash      string            `json:"hash"`

	// Index is Consul's ModifyIndex of current when this set was read;
	// the base of the next check-and-set.
	Index uint64 `json:"-"`
}

// FileBytes returns the files as bytes.
func (s *Set) FileBytes() map[string][]byte {
	out := make(map[string][]byte, len(s.Files))
	for n, c := range s.Files {
		out[n] = []byte(c)
	}
	return out
}

// ConflictError is ErrConflict with what is in the store now.
type ConflictError struct{ Current *Set }

func (e *ConflictError) Error() string {
	if e.Current == nil {
		return ErrConflict.Error()
	}
	if e.Current.Seq == 0 {
		return fmt.Sprintf("%v: revision %.12s is in force now; preview against it and apply again", ErrConflict, e.Current.Revision)
	}
	return fmt.Sprintf("%v: revision %.12s (#%d) was applied by %s at %s; preview against it and apply again",
		ErrConflict, e.Current.Revision, e.Current.Seq, e.Current.AppliedBy, e.Current.Time.UTC().Format(time.RFC3339))
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// Store is the Consul KV policy store.
type Store struct {
	kv     *api.KV
	txn    *api.Txn
	prefix string
	wait   time.Duration
}

// New returns a store under prefix ("" is DefaultPrefix).
func New(client *api.Client, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{kv: client.KV(), txn: client.Txn(), prefix: strings.TrimSuffix(prefix, "/"), wait: 5 * time.Minute}
}

// Key is the key of the set in force.
func (s *Store) Key() string { return s.prefix + "/current" }

func (s *Store) historyKey(seq uint64) string {
	return fmt.Sprintf("%s/history/%020d", s.prefix, seq)
}

// Get returns the set in force, nil if none was ever applied.
func (s *Store) Get(ctx context.Context) (*Set, error) {
	set, _, err := s.Watch(ctx, 0)
	return set, err
}

// Watch blocks until current's index passes index (or Consul's wait time
// ends) and returns the set and the index to wait on next.
func (s *Store) Watch(ctx context.Context, index uint64) (*Set, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: s.wait}).WithContext(ctx)
	pair, meta, err := s.kv.Get(s.Key(), q)
	if err != nil {
		return nil, index, fmt.Errorf("%w: read %s: %w", ErrUnavailable, s.Key(), err)
	}
	if pair == nil {
		return nil, meta.LastIndex, nil
	}
	set, err := decode(pair.Value)
	if err != nil {
		return nil, meta.LastIndex, fmt.Errorf("%s: %w", s.Key(), err)
	}
	set.Index = pair.ModifyIndex
	return set, meta.LastIndex, nil
}

// ErrNewerSchema says a stored set was written by a newer release.
var ErrNewerSchema = errors.New("written by a newer meshwarden")

func decode(b []byte) (*Set, error) {
	var probe struct {
		Schema   int    `json:"schema"`
		Revision string `json:"revision"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("not a policy set: %w", err)
	}
	if probe.Schema > Schema {
		return &Set{Schema: probe.Schema, Revision: probe.Revision}, fmt.Errorf("revision %.12s is %w (schema %d; this binary reads up to %d): upgrade this replica", probe.Revision, ErrNewerSchema, probe.Schema, Schema)
	}
	var set Set
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a policy set: %w", err)
	}
	if want := hashOf(&set); set.Hash != want {
		return nil, fmt.Errorf("policy set #%d does not match its hash (stored %.12s, computed %.12s): it was altered in Consul KV", set.Seq, set.Hash, want)
	}
	return &set, nil
}

// Put stores next as the set in force if the store is still at base (nil:
// empty). It fills next's Schema, Seq, Previous, PrevHash and Hash and
// returns it with its new index. A set equal to base's revision is not
// stored again. Errors: *ConflictError (wraps ErrConflict) or
// ErrUnavailable; nothing is written then.
func (s *Store) Put(ctx context.Context, next *Set, base *Set) (*Set, error) {
	out := *next
	out.Schema = Schema
	out.Seq, out.Previous, out.PrevHash = 1, "", ""
	var idx uint64
	if base != nil {
		out.Seq, out.Previous, out.PrevHash, idx = base.Seq+1, base.Revision, base.Hash, base.Index
	}
	out.Hash = hashOf(&out)
	b, err := json.Marshal(&out)
	if err != nil {
		return nil, err
	}
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.Key(), Value: b, Index: idx}},
		{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: s.historyKey(out.Seq)}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.historyKey(out.Seq), Value: b}},
	}
	ok, resp, _, err := s.txn.Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: write %s: %w", ErrUnavailable, s.Key(), err)
	}
	if !ok {
		cur, gerr := s.Get(ctx)
		if gerr != nil && !errors.Is(gerr, ErrNewerSchema) {
			return nil, &ConflictError{}
		}
		return nil, &ConflictError{Current: cur}
	}
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.Key == s.Key() {
			out.Index = r.KV.ModifyIndex
		}
	}
	return &out, nil
}

// History returns every applied set, oldest first, and checks their chain:
// consecutive seqs, each PrevHash the hash of the one before, each hash
// its content's.
func (s *Store) History(ctx context.Context) ([]*Set, error) {
	pairs, _, err := s.kv.List(s.prefix+"/history/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: list history: %w", ErrUnavailable, err)
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Key < pairs[j].Key })
	var out []*Set
	for _, p := range pairs {
		set, err := decode(p.Value)
		if err != nil {
			return out, fmt.Errorf("%s: %w", p.Key, err)
		}
		if want := s.historyKey(set.Seq); p.Key != want {
			return out, fmt.Errorf("%s holds set #%d: entries were moved", p.Key, set.Seq)
		}
		if n := len(out); n > 0 {
			prev := out[n-1]
			if set.Seq != prev.Seq+1 {
				return out, fmt.Errorf("history jumps from #%d to #%d: entries were deleted", prev.Seq, set.Seq)
			}
			if set.PrevHash != prev.Hash {
				return out, fmt.Errorf("set #%d does not chain to #%d", set.Seq, prev.Seq)
			}
		} else if set.Seq != 1 {
			return out, fmt.Errorf("history starts at #%d: earlier entries were deleted", set.Seq)
		}
		out = append(out, set)
	}
	return out, nil
}

// hashOf is sha256 over the set's canonical JSON without its Hash.
func hashOf(set *Set) string {
	c := *set
	c.Hash, c.Index = "", 0
	names := slices.Sorted(maps.Keys(c.Files))
	h := sha256.New()
	write := func(k, v string) { h.Write([]byte(k + "\x00" + strconv.Itoa(len(v)) + "\x00" + v + "\x00")) }
	write("schema", strconv.Itoa(c.Schema))
	write("seq", strconv.FormatUint(c.Seq, 10))
	write("revision", c.Revision)
	write("previous", c.Previous)
	for _, n := range names {
		write("file:"+n, c.Files[n])
	}
	write("applied_by", c.AppliedBy)
	write("source", c.Source)
	write("replica", c.Replica)
	write("time", c.Time.UTC().Format(time.RFC3339Nano))
	write("prev_hash", c.PrevHash)
	return hex.EncodeToString(h.Sum(nil))
}
