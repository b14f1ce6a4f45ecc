package policies

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// OpPolicyApply is the op_type of a change record.
const OpPolicyApply = "POLICY_APPLY"

// Change is one applied policy set, as given to [ChangeLog.Append].
type Change struct {
	// Identity is who applied the set: the principal the plane
	// authenticated, or for the plane's own directory reloads the plane.
	Identity string
	// Time is when the set was applied.
	Time time.Time
	// Revision is the set's content hash ([Revision]).
	Revision string
	// Previous is the revision it replaced ("" for the first).
	Previous string
	// Source says where the set came from, e.g. the policy directory or
	// "api" for sets posted to the plane.
	Source string
	// Diff is the readable change (unified diff of the xDS resources or of
	// the files), or for a rollout decision its JSON with the evidence.
	Diff string
	// OpType, Resource and Method default to POLICY_APPLY,
	// policyset:<Revision> and APPLY; a rollout decision is
	// ROLLOUT_DECISION, rollout:<name>, its action.
	OpType, Resource, Method string
}

// OpRolloutDecision is the op_type of a rollout decision's record.
const OpRolloutDecision = "ROLLOUT_DECISION"

// ChangeRecord is one line of the change log: an auditevent.Event chained like
// every audit record (hash = SHA-256(prev_hash || canonical(event))), plus
// the diff text, which the event commits to by its body_digest
// ("sha256:<hex of Diff>"). The audit store can take the events over as
// they are.
type ChangeRecord struct {
	auditevent.Event
	Diff string `json:"diff"`
}

// ChangeLog is an append-only, hash-chained JSONL file of applied policy
// sets. It is safe for concurrent use, also by several processes: each
// append holds an exclusive file lock (flock) and continues the chain from
// the file's current last record.
type ChangeLog struct {
	path string
	mu   sync.Mutex
	seq  uint64
	last string
	// signer, if set, signs a checkpoint after every append.
	signer ed25519.PrivateKey
}

// OpenChangeLog opens (or creates) the change log at path and verifies the
// chain already in it, so a tampered log is found before anything is added.
func OpenChangeLog(path string) (*ChangeLog, error) {
	l := &ChangeLog{path: path}
	recs, err := ReadChangeLog(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if n := len(recs); n > 0 {
		l.seq, l.last = recs[n-1].Seq, recs[n-1].Hash
	}
	return l, nil
}

// Append records c and returns its record. The line is written with one
// write(2) on an O_APPEND file and fsynced before Append returns.
func (l *ChangeLog) Append(ctx context.Context, c Change) (*ChangeRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.Identity == "" {
		return nil, errors.New("change record: identity is empty: the plane names who applied the set")
	}
	if c.Time.IsZero() {
		c.Time = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("change record: open log (check the directory exists and is writable): %w", err)
	}
	defer f.Close()
	// Another process (a second `meshwarden policy apply`) may append to the
	// same log: hold an exclusive lock and continue the chain from what is
	// in the file now, verifying it on the way.
	if err := lockFile(f); err != nil {
		return nil, fmt.Errorf("change record: lock %s: %w", l.path, err)
	}
	defer unlockFile(f)
	recs, err := readChangeLog(f, l.path)
	if err != nil {
		return nil, fmt.Errorf("change record: refusing to append to a broken log: %w", err)
	}
	l.seq, l.last = 0, ""
	if n := len(recs); n > 0 {
		l.seq, l.last = recs[n-1].Seq, recs[n-1].Hash
	}
	seq := l.seq + 1
	rev := c.Revision
	if len(rev) > 16 {
		rev = rev[:16]
	}
	sum := sha256.Sum256([]byte(c.Diff))
	op, res, method := OpPolicyApply, "policyset:"+c.Revision, "APPLY"
	if c.OpType != "" {
		op, res, method = c.OpType, c.Resource, c.Method
	}
	r := &ChangeRecord{
		Event: auditevent.Event{
			ID:         "policy-" + rev + "-" + strconv.FormatUint(seq, 10),
			Seq:        seq,
			Phase:      auditevent.PhaseOutcome,
			Level:      auditevent.LevelNotice,
			OpType:     op,
			Subject:    c.Identity,
			Resource:   res,
			Timestamp:  c.Time.UnixNano(),
			Method:     method,
			Path:       c.Source,
			Headers:    map[string]string{"previous_revision": c.Previous},
			BodyDigest: "sha256:" + hex.EncodeToString(sum[:]),
			Source:     "meshwarden-policy",
		},
		Diff: c.Diff,
	}
	r.Chain(l.last)
	line, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("change record: encode: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("change record: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("change record: fsync: %w", err)
	}
	l.seq, l.last = seq, r.Hash
	if l.signer != nil {
		if err := l.writeCheckpoint(seq, r.Hash); err != nil {
			return r, err
		}
	}
	return r, nil
}

// ReadChangeLog reads and verifies every record of the log at path: each
// record must chain to the one before it, carry consecutive sequence
// numbers, and its diff must match its body_digest. On a broken chain it
// returns the records read so far and an error naming the line.
func ReadChangeLog(path string) ([]ChangeRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("change log: %w", err)
	}
	defer f.Close()
	return readChangeLog(f, path)
}

func readChangeLog(r io.Reader, name string) ([]ChangeRecord, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("change log %s: %w", name, err)
	}
	var out []ChangeRecord
	prev := ""
	offset := 0
	for line := 1; offset < len(data); line++ {
		end := bytes.IndexByte(data[offset:], '\n')
		complete := end >= 0
		if !complete {
			end = len(data) - offset
		}
		b := bytes.TrimSpace(data[offset : offset+end])
		start := offset
		offset += end + 1
		if len(b) == 0 {
			continue
		}
		var rec ChangeRecord
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			if !complete {
				return out, fmt.Errorf("change log %s:%d: the last record is incomplete (a write was interrupted): after checking it, truncate the file to %d bytes to drop it", name, line, start)
			}
			return out, fmt.Errorf("change log %s:%d: not a change record: %w", name, line, err)
		}
		if want := uint64(len(out) + 1); rec.Seq != want {
			return out, fmt.Errorf("change log %s:%d: seq %d, want %d: a record was dropped, inserted or reordered", name, line, rec.Seq, want)
		}
		if err := rec.VerifyLink(prev); err != nil {
			return out, fmt.Errorf("change log %s:%d: %w", name, line, err)
		}
		sum := sha256.Sum256([]byte(rec.Diff))
		if rec.BodyDigest != "sha256:"+hex.EncodeToString(sum[:]) {
			return out, fmt.Errorf("change log %s:%d: the diff does not match body_digest: the diff was altered", name, line)
		}
		prev = rec.Hash
		out = append(out, rec)
	}
	return out, nil
}
