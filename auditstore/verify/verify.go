// Package verify proves that an audit WAL directory holds an unbroken,
// unaltered hash chain that reaches every signed checkpoint: it detects
// modified, deleted, inserted and reordered records and truncation, and names
// the first bad record (segment, offset, seq, id).
package verify

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/meshwarden/meshwarden/auditstore/wal"
)

// Problem locates the first thing wrong with a trail.
type Problem struct {
	Kind    string // modified, out-of-sequence, missing, inserted, truncated, corrupt, checkpoint, unanchored
	Segment string
	Offset  int64
	Seq     uint64 // 0 when the record cannot be decoded
	ID      string
	Reason  string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("%s: segment %s offset %d seq %d id %q: %s", p.Kind, p.Segment, p.Offset, p.Seq, p.ID, p.Reason)
}

// Report is the outcome of a verification.
type Report struct {
	Segments    int
	Records     uint64
	FirstSeq    uint64
	LastSeq     uint64
	Head        string
	Checkpoints int // signed checkpoints that verified and match the chain
	LastSigned  wal.Checkpoint
	// Warnings are not failures, e.g. an incomplete last record left by a
	// crash the collector has not yet recovered (it is beyond every signed
	// checkpoint, so it was never acknowledged... or is being written now).
	Warnings []string
	Problem  *Problem
}

// OK reports whether the trail verified.
func (r *Report) OK() bool { return r.Problem == nil }

// Format writes the human-readable report.
func (r *Report) Format(w io.Writer) {
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
	if r.Problem != nil {
		p := r.Problem
		fmt.Fprintf(w, "FAIL  %s\n", p.Kind)
		fmt.Fprintf(w, "  first bad record: segment %s, offset %d, seq %d, id %q\n", p.Segment, p.Offset, p.Seq, p.ID)
		fmt.Fprintf(w, "  reason: %s\n", p.Reason)
		if r.Records == 0 {
			fmt.Fprintf(w, "  verified before it: no records (%d segment(s) present)\n", r.Segments)
		} else {
			fmt.Fprintf(w, "  verified before it: %d records (seq %d..%d) in %d segment(s)\n", r.Records, r.FirstSeq, r.LastSeq, r.Segments)
		}
		return
	}
	fmt.Fprintf(w, "OK    %d records, seq %d..%d, %d segment(s)\n", r.Records, r.FirstSeq, r.LastSeq, r.Segments)
	fmt.Fprintf(w, "      chain head %s\n", r.Head)
	if r.LastSigned.Seq > 0 {
		fmt.Fprintf(w, "      %d signed checkpoint(s) match; last signed at seq %d\n", r.Checkpoints, r.LastSigned.Seq)
	} else {
		fmt.Fprintf(w, "      no signed checkpoint yet: truncation cannot be ruled out\n")
	}
}

// Dir verifies the WAL in dir against pub. It returns an error only when it
// cannot read the directory; a broken trail is a Report with a Problem.
func Dir(ctx context.Context, dir string, pub ed25519.PublicKey) (*Report, error) {
	return DirWith(ctx, dir, pub, nil)
}

// DirWith is Dir with extra signed checkpoints from elsewhere (e.g. the
// copies the exporter published to JetStream), merged with the directory's
// own: deleting checkpoints from the collector's disk then no longer hides a
// truncation.
func DirWith(ctx context.Context, dir string, pub ed25519.PublicKey, extra []wal.Checkpoint) (*Report, error) {
	rep := &Report{}
	cps, err := wal.ReadCheckpoints(dir)
	if err != nil {
		return nil, err
	}
	cps = append(cps, extra...)
	bySeq := map[uint64]wal.Checkpoint{}
	var last wal.Checkpoint
	for _, c := range cps {
		if err := c.VerifySig(pub); err != nil {
			rep.Problem = &Problem{Kind: "checkpoint", Segment: c.Segment, Seq: c.Seq, Reason: err.Error()}
			return rep, nil
		}
		if prev, ok := bySeq[c.Seq]; ok && prev.Hash != c.Hash {
			rep.Problem = &Problem{Kind: "checkpoint", Segment: c.Segment, Seq: c.Seq, Reason: "two signed checkpoints disagree about this record's hash"}
			return rep, nil
		}
		bySeq[c.Seq] = c
		if c.Seq >= last.Seq {
			last = c
		}
	}
	rep.LastSigned = last
	segs, err := wal.ListSegments(dir)
	if err != nil {
		return nil, err
	}
	rep.Segments = len(segs)
	if len(segs) == 0 {
		if last.Seq > 0 {
			rep.Problem = &Problem{Kind: "truncated", Seq: 1, Reason: fmt.Sprintf("no segment files, but a signed checkpoint covers seq %d", last.Seq)}
		}
		return rep, nil
	}
	first := segs[0].FirstSeq
	rep.FirstSeq = first
	prev := ""
	if first > 1 {
		c, ok := bySeq[first-1]
		if !ok {
			rep.Problem = &Problem{Kind: "unanchored", Segment: segs[0].Name, Seq: first,
				Reason: fmt.Sprintf("the trail starts at seq %d but no signed checkpoint at seq %d anchors it: earlier records were deleted outside retention", first, first-1)}
			return rep, nil
		}
		prev = c.Hash
	}
	next := first
	var endSeg string
	var endOff int64
	for si, s := range segs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.FirstSeq != next {
			kind, why := "missing", fmt.Sprintf("segment starts at seq %d but the previous record was seq %d: records %d..%d are missing (segment deleted?)", s.FirstSeq, next-1, next, s.FirstSeq-1)
			if s.FirstSeq < next {
				kind, why = "inserted", fmt.Sprintf("segment starts at seq %d, overlapping records already seen up to seq %d", s.FirstSeq, next-1)
			}
			rep.Problem = &Problem{Kind: kind, Segment: s.Name, Seq: s.FirstSeq, Reason: why}
			return rep, nil
		}
		p, err := verifySegment(s, si == len(segs)-1, &next, &prev, bySeq, last.Seq, rep)
		if err != nil {
			return nil, err
		}
		if p != nil {
			rep.Problem = p
			return rep, nil
		}
		endSeg = s.Name
		if fi, err := statSize(s.Path); err == nil {
			endOff = fi
		}
	}
	rep.Head = prev
	if rep.LastSeq > last.Seq && last.Seq > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("records %d..%d come after the last signed checkpoint (seq %d): their chain is intact, but until a checkpoint signs them an attacker could have appended or cut them", last.Seq+1, rep.LastSeq, last.Seq))
	}
	if rep.LastSeq < last.Seq {
		rep.Problem = &Problem{Kind: "truncated", Segment: endSeg, Offset: endOff, Seq: rep.LastSeq + 1,
			Reason: fmt.Sprintf("the trail ends at seq %d but a signed checkpoint covers seq %d: records %d..%d were removed", rep.LastSeq, last.Seq, rep.LastSeq+1, last.Seq)}
	}
	return rep, nil
}

func verifySegment(s wal.Segment, lastSeg bool, next *uint64, prev *string, bySeq map[uint64]wal.Checkpoint, lastSigned uint64, rep *Report) (*Problem, error) {
	r, err := wal.OpenSegment(s.Path, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return nil, nil
		}
		if err == io.ErrUnexpectedEOF {
			if lastSeg && *next > lastSigned {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("segment %s ends with an incomplete record at offset %d (a crash the collector has not recovered yet, or a write in progress); it is beyond the last signed checkpoint", s.Name, r.Offset()))
				return nil, nil
			}
			return &Problem{Kind: "truncated", Segment: s.Name, Offset: r.Offset(), Seq: *next, Reason: "the segment ends in the middle of a record"}, nil
		}
		if errors.Is(err, wal.ErrCorrupt) {
			p := &Problem{Kind: "corrupt", Segment: s.Name, Offset: rec.Offset, Seq: *next, Reason: err.Error() + " (bytes were altered)"}
			if rec.Payload != nil {
				if e, derr := wal.DecodeEvent(rec.Payload); derr == nil {
					p.ID = e.ID
				}
			}
			return p, nil
		}
		if err != nil {
			return nil, err
		}
		e, err := wal.DecodeEvent(rec.Payload)
		if err != nil {
			return &Problem{Kind: "corrupt", Segment: s.Name, Offset: rec.Offset, Seq: *next, Reason: err.Error()}, nil
		}
		bad := func(kind, why string) *Problem {
			return &Problem{Kind: kind, Segment: s.Name, Offset: rec.Offset, Seq: e.Seq, ID: e.ID, Reason: why}
		}
		switch {
		case e.Seq > *next:
			return bad("out-of-sequence", fmt.Sprintf("expected seq %d here, found seq %d: records %d..%d were deleted here or moved later", *next, e.Seq, *next, e.Seq-1)), nil
		case e.Seq < *next:
			return bad("out-of-sequence", fmt.Sprintf("expected seq %d here, found seq %d: records were moved earlier or a copy was inserted", *next, e.Seq)), nil
		}
		if err := e.VerifyLink(*prev); err != nil {
			kind := "modified"
			if e.PrevHash != *prev {
				kind = "inserted"
			}
			return bad(kind, err.Error()), nil
		}
		if c, ok := bySeq[e.Seq]; ok {
			if c.Hash != e.Hash {
				return bad("modified", fmt.Sprintf("the record's hash differs from the signed checkpoint at seq %d: the chain was rewritten from here on", e.Seq)), nil
			}
			rep.Checkpoints++
		}
		*prev = e.Hash
		*next = e.Seq + 1
		rep.LastSeq = e.Seq
		rep.Records++
	}
}

// Checkpoints returns the checkpoints sorted by seq (for display).
func Checkpoints(dir string) ([]wal.Checkpoint, error) {
	cps, err := wal.ReadCheckpoints(dir)
	sort.Slice(cps, func(i, j int) bool { return cps[i].Seq < cps[j].Seq })
	return cps, err
}

var _ error = (*Problem)(nil)
