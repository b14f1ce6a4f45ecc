// Package proof makes and checks RFC 6962 inclusion and consistency proofs
// over an audit trail, with golang.org/x/mod/sumdb/tlog: one record can be
// shown to a regulator together with a signed checkpoint (a C2SP signed
// note) and a handful of hashes, without handing over the log.
//
// The leaf of record seq s is tlog.RecordHash(payload), at tree index s-1,
// where payload is the record's stored bytes (its canonical JSON with
// "hash"), exactly what `meshwarden audit query` prints.
package proof

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/meshwarden/meshwarden/auditstore/wal"
)

// Inclusion proves that Record is record Seq of the tree the Checkpoint signs.
type Inclusion struct {
	Seq        uint64      `json:"seq"`
	Record     string      `json:"record"`
	TreeSize   uint64      `json:"tree_size"`
	Proof      []tlog.Hash `json:"proof"`
	Checkpoint string      `json:"checkpoint"` // C2SP signed note
}

// Consistency proves that the tree signed by New extends the one signed by Old.
type Consistency struct {
	Old   string      `json:"old_checkpoint"`
	New   string      `json:"new_checkpoint"`
	Proof []tlog.Hash `json:"proof"`
}

// tree holds every stored tlog hash of a trail that starts at seq 1.
type tree struct {
	hashes  []tlog.Hash
	n       int64
	records map[uint64][]byte // only the wanted ones
}

func (t *tree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("stored hash %d not in a tree of %d records", x, t.n)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

func readTree(ctx context.Context, dir string, upTo uint64, want map[uint64]bool) (*tree, error) {
	segs, err := wal.ListSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("no audit segments in %s", dir)
	}
	if segs[0].FirstSeq != 1 {
		return nil, fmt.Errorf("the trail in %s starts at seq %d (retention deleted the rest): proofs need every record from seq 1, so prove from an archive that holds them", dir, segs[0].FirstSeq)
	}
	t := &tree{records: map[uint64][]byte{}}
	for _, s := range segs {
		r, err := wal.OpenSegment(s.Path, 0)
		if err != nil {
			return nil, err
		}
		for uint64(t.n) < upTo {
			if t.n%4096 == 0 && ctx.Err() != nil {
				r.Close()
				return nil, ctx.Err()
			}
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read %s: %w (run meshwarden audit verify)", s.Name, err)
			}
			hs, err := tlog.StoredHashes(t.n, rec.Payload, t)
			if err != nil {
				r.Close()
				return nil, err
			}
			t.hashes = append(t.hashes, hs...)
			t.n++
			if want[uint64(t.n)] {
				t.records[uint64(t.n)] = append([]byte(nil), rec.Payload...)
			}
		}
		r.Close()
	}
	if uint64(t.n) < upTo {
		return nil, fmt.Errorf("the trail in %s holds %d records, fewer than the %d the checkpoint covers", dir, t.n, upTo)
	}
	return t, nil
}

// pickCheckpoint returns the signed checkpoint at seq at (0: the latest
// with a signed note covering min).
func pickCheckpoint(dir string, at, minSeq uint64) (wal.Checkpoint, error) {
	cps, err := wal.ReadCheckpoints(dir)
	if err != nil {
		return wal.Checkpoint{}, err
	}
	var best wal.Checkpoint
	for _, c := range cps {
		if c.Note == "" || c.Seq < minSeq {
			continue
		}
		if at != 0 {
			if c.Seq == at {
				return c, nil
			}
			continue
		}
		if c.Seq >= best.Seq {
			best = c
		}
	}
	if best.Seq == 0 {
		if at != 0 {
			return best, fmt.Errorf("no signed-note checkpoint at seq %d in %s: pick one of the seqs in %s", at, dir, wal.CheckpointFile)
		}
		return best, fmt.Errorf("no signed-note checkpoint covers seq %d yet in %s: wait for the collector's next checkpoint", minSeq, dir)
	}
	return best, nil
}

// ProveRecord makes the inclusion proof of record seq in the tree of the
// checkpoint at seq at (0: the latest).
func ProveRecord(ctx context.Context, dir string, seq, at uint64) (*Inclusion, error) {
	if seq == 0 {
		return nil, errors.New("--seq must be 1 or more")
	}
	c, err := pickCheckpoint(dir, at, seq)
	if err != nil {
		return nil, err
	}
	if seq > c.Seq {
		return nil, fmt.Errorf("record %d is not covered by the checkpoint at seq %d: pick a later checkpoint", seq, c.Seq)
	}
	t, err := readTree(ctx, dir, c.Seq, map[uint64]bool{seq: true})
	if err != nil {
		return nil, err
	}
	p, err := tlog.ProveRecord(int64(c.Seq), int64(seq-1), t)
	if err != nil {
		return nil, fmt.Errorf("prove record %d: %w", seq, err)
	}
	return &Inclusion{Seq: seq, Record: string(t.records[seq]), TreeSize: c.Seq, Proof: p, Checkpoint: c.Note}, nil
}

// ProveConsistency makes the proof that the checkpoint at seq to extends
// the one at seq from.
func ProveConsistency(ctx context.Context, dir string, from, to uint64) (*Consistency, error) {
	if from == 0 || to < from {
		return nil, fmt.Errorf("--from %d and --to %d must be checkpoint seqs with from <= to", from, to)
	}
	oc, err := pickCheckpoint(dir, from, from)
	if err != nil {
		return nil, err
	}
	nc, err := pickCheckpoint(dir, to, to)
	if err != nil {
		return nil, err
	}
	t, err := readTree(ctx, dir, to, nil)
	if err != nil {
		return nil, err
	}
	p, err := tlog.ProveTree(int64(to), int64(from), t)
	if err != nil {
		return nil, fmt.Errorf("prove consistency %d..%d: %w", from, to, err)
	}
	return &Consistency{Old: oc.Note, New: nc.Note, Proof: p}, nil
}

// Tree is what a signed checkpoint states.
type Tree struct {
	Size uint64
	Root tlog.Hash
	Head string // hash-chain head at Size
}

// OpenCheckpoint checks a signed note with pub and parses its tree.
func OpenCheckpoint(pub ed25519.PublicKey, msg string) (Tree, error) {
	v, err := wal.NewNoteVerifier(pub)
	if err != nil {
		return Tree{}, err
	}
	n, err := note.Open([]byte(msg), note.VerifierList(v))
	if err != nil {
		return Tree{}, fmt.Errorf("checkpoint does not verify with this public key: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != wal.NoteKeyName {
		return Tree{}, fmt.Errorf("checkpoint is not a %s tree checkpoint", wal.NoteKeyName)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return Tree{}, fmt.Errorf("checkpoint tree size %q: %w", lines[1], err)
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return Tree{}, fmt.Errorf("checkpoint root %q: %w", lines[2], err)
	}
	t := Tree{Size: size, Root: root}
	if f := strings.Fields(lines[3]); len(f) >= 2 && f[0] == "meshwarden-chain" {
		t.Head = f[1]
	}
	return t, nil
}

// CheckInclusion verifies p with only the public key: the checkpoint's
// signature, then that the record hashes into its tree at index seq-1, and
// that the record says it is seq.
func CheckInclusion(pub ed25519.PublicKey, p *Inclusion) (Tree, error) {
	t, err := OpenCheckpoint(pub, p.Checkpoint)
	if err != nil {
		return t, err
	}
	if t.Size != p.TreeSize || p.Seq == 0 || p.Seq > t.Size {
		return t, fmt.Errorf("proof is for record %d of a tree of %d, the checkpoint signs a tree of %d", p.Seq, p.TreeSize, t.Size)
	}
	var rec struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(p.Record), &rec); err != nil || rec.Seq != p.Seq {
		return t, fmt.Errorf("the record does not say it is seq %d", p.Seq)
	}
	if err := tlog.CheckRecord(p.Proof, int64(t.Size), t.Root, int64(p.Seq-1), tlog.RecordHash([]byte(p.Record))); err != nil {
		return t, fmt.Errorf("record %d is not in the signed tree: %w", p.Seq, err)
	}
	return t, nil
}

// CheckConsistency verifies that New's tree extends Old's.
func CheckConsistency(pub ed25519.PublicKey, p *Consistency) (old, cur Tree, err error) {
	if old, err = OpenCheckpoint(pub, p.Old); err != nil {
		return old, cur, fmt.Errorf("old checkpoint: %w", err)
	}
	if cur, err = OpenCheckpoint(pub, p.New); err != nil {
		return old, cur, fmt.Errorf("new checkpoint: %w", err)
	}
	if old.Size > cur.Size {
		return old, cur, fmt.Errorf("old checkpoint (size %d) is larger than the new one (size %d)", old.Size, cur.Size)
	}
	if err := tlog.CheckTree(p.Proof, int64(cur.Size), cur.Root, int64(old.Size), old.Root); err != nil {
		return old, cur, fmt.Errorf("the tree of size %d does not extend the tree of size %d: %w", cur.Size, old.Size, err)
	}
	return old, cur, nil
}
