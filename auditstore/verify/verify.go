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
	"time"

	"golang.org/x/mod/sumdb/tlog"

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
	// MerkleChecked counts checkpoints whose signed Merkle root was
	// recomputed from the records and matched.
	MerkleChecked int
	// Held lists the guarantees that were proven; NeedWitness lists what
	// this directory alone cannot prove (said plainly in the output).
	Held, NeedWitness []string
	// Warnings are not failures, e.g. an incomplete last record left by a
	// crash the collector has not yet recovered (it is beyond every signed
	// checkpoint, so it was never acknowledged... or is being written now).
	Warnings []string
	Problem  *Problem
}

// Options tune [Verify]. The zero value is the strict default.
type Options struct {
	// Extra are signed checkpoints kept elsewhere (files given to
	// --checkpoints), merged with the directory's own.
	Extra []wal.Checkpoint
	// Witness are the checkpoints an external witness holds (JetStream);
	// WitnessName names it in the output. WitnessChecked says a witness was
	// consulted (even if it holds nothing yet); WitnessSkipped explains why
	// one that was asked for could not be.
	Witness        []wal.Checkpoint
	WitnessName    string
	WitnessChecked bool
	WitnessSkipped string
	// AllowUnsignedTail accepts records that no signed checkpoint covers
	// (including a trail with no checkpoint at all), as a warning.
	AllowUnsignedTail bool
	// MaxUnsignedAge is how old the first record after the last signed
	// checkpoint may be before the unsigned tail is a failure (the collector
	// signs every second by default, so an older tail means it stopped
	// signing, or the trail was forged). Default 5 minutes.
	MaxUnsignedAge time.Duration
	// Now is the time to measure that age against. Default time.Now().
	Now time.Time
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
		fmt.Fprintf(w, "      no signed checkpoint (allowed by --allow-unsigned-tail): truncation and forgery cannot be ruled out\n")
	}
	for _, s := range r.Held {
		fmt.Fprintf(w, "  %-14s %s\n", "held:", s)
	}
	for _, s := range r.NeedWitness {
		fmt.Fprintf(w, "  %-14s %s\n", "needs witness:", s)
	}
}

// Dir verifies the WAL in dir against pub. It returns an error only when it
// cannot read the directory; a broken trail is a Report with a Problem.
func Dir(ctx context.Context, dir string, pub ed25519.PublicKey) (*Report, error) {
	return Verify(ctx, dir, pub, Options{})
}

// DirWith is Dir with extra signed checkpoints from elsewhere (e.g. the
// copies the exporter published to JetStream), merged with the directory's
// own: deleting checkpoints from the collector's disk then no longer hides a
// truncation.
func DirWith(ctx context.Context, dir string, pub ed25519.PublicKey, extra []wal.Checkpoint) (*Report, error) {
	return Verify(ctx, dir, pub, Options{Extra: extra})
}

type anchor struct {
	c       wal.Checkpoint
	witness bool
}

// anchors are the signed checkpoints a trail is verified against: the
// collector's own, extra copies, and the witness's.
type anchors struct {
	bySeq       map[uint64]anchor
	starts      map[uint64]bool
	last        wal.Checkpoint // the newest signed checkpoint
	lastWitness wal.Checkpoint // the newest one the witness holds
}

// Verify checks the trail in dir and fails closed: records that no signed
// checkpoint covers, a trail that does not start at seq 1 or at a signed
// retention start, and an unsigned tail older than opt.MaxUnsignedAge are
// failures unless opt allows them.
func Verify(ctx context.Context, dir string, pub ed25519.PublicKey, opt Options) (*Report, error) {
	if opt.MaxUnsignedAge <= 0 {
		opt.MaxUnsignedAge = 5 * time.Minute
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	rep := &Report{}
	an, problem, err := collectAnchors(dir, pub, opt)
	if err != nil {
		return nil, err
	}
	if problem != nil {
		rep.Problem = problem
		return rep, nil
	}
	last := an.last
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
	v, problem := startWalker(segs[0], an, rep, opt)
	if problem != nil {
		rep.Problem = problem
		return rep, nil
	}
	endSeg, endOff, problem, err := v.walk(ctx, segs)
	if err != nil {
		return nil, err
	}
	if problem != nil {
		rep.Problem = problem
		return rep, nil
	}
	rep.Head = v.prev
	if p := checkEnd(rep, an, v, segs[0].Name, endSeg, endOff, opt); p != nil {
		rep.Problem = p
		return rep, nil
	}
	state(rep, an, first, opt)
	return rep, nil
}

// collectAnchors reads and checks every signed checkpoint: each signature
// and note, and that no two disagree about one record's hash (naming the
// witness when it is one of the two).
func collectAnchors(dir string, pub ed25519.PublicKey, opt Options) (*anchors, *Problem, error) {
	nv, err := wal.NewNoteVerifier(pub)
	if err != nil {
		return nil, nil, err
	}
	cps, err := wal.ReadCheckpoints(dir)
	if err != nil {
		return nil, nil, err
	}
	var all []anchor
	for _, c := range append(cps, opt.Extra...) {
		all = append(all, anchor{c: c})
	}
	for _, c := range opt.Witness {
		all = append(all, anchor{c: c, witness: true})
	}
	an := &anchors{bySeq: map[uint64]anchor{}, starts: map[uint64]bool{}}
	for _, a := range all {
		c := a.c
		if err := c.VerifySig(pub); err != nil {
			return nil, &Problem{Kind: "checkpoint", Segment: c.Segment, Seq: c.Seq, Reason: err.Error()}, nil
		}
		if c.Note != "" {
			if err := c.OpenNote(nv); err != nil {
				return nil, &Problem{Kind: "checkpoint", Segment: c.Segment, Seq: c.Seq, Reason: err.Error()}, nil
			}
		}
		if prev, ok := an.bySeq[c.Seq]; ok && prev.c.Hash != c.Hash {
			kind, why := "checkpoint", "two signed checkpoints disagree about this record's hash"
			if prev.witness != a.witness {
				w, l := c, prev.c
				if prev.witness {
					w, l = prev.c, c
				}
				kind, why = "witness", fmt.Sprintf("the witness %s holds head %s at seq %d, the local checkpoints hold head %s at seq %d: one of them was rewritten", opt.WitnessName, w.Hash, w.Seq, l.Hash, l.Seq)
			}
			return nil, &Problem{Kind: kind, Segment: c.Segment, Seq: c.Seq, Reason: why}, nil
		}
		if _, ok := an.bySeq[c.Seq]; !ok || a.witness {
			an.bySeq[c.Seq] = a
		}
		if c.Start > 0 {
			an.starts[c.Start] = true
		}
		if c.Seq >= an.last.Seq {
			an.last = c
		}
		if a.witness && c.Seq >= an.lastWitness.Seq {
			an.lastWitness = c
		}
	}
	return an, nil, nil
}

// startWalker anchors the walk at the trail's first segment: seq 1, or a
// later seq that a signed checkpoint and a signed retention statement both
// vouch for.
func startWalker(firstSeg wal.Segment, an *anchors, rep *Report, opt Options) (*walker, *Problem) {
	first := firstSeg.FirstSeq
	prev := ""
	var tree *wal.Frontier
	if first == 1 {
		tree = &wal.Frontier{}
	} else {
		a, ok := an.bySeq[first-1]
		if !ok {
			return nil, &Problem{Kind: "unanchored", Segment: firstSeg.Name, Seq: first,
				Reason: fmt.Sprintf("the trail starts at seq %d but no signed checkpoint at seq %d anchors it: earlier records were deleted outside retention", first, first-1)}
		}
		if !an.starts[first] {
			return nil, &Problem{Kind: "unanchored", Segment: firstSeg.Name, Seq: first,
				Reason: fmt.Sprintf("the trail starts at seq %d but no signed retention statement says it starts there: records %d..%d were deleted outside retention (restore them)", first, 1, first-1)}
		}
		prev = a.c.Hash
		if f, err := wal.FrontierAt(a.c); err == nil {
			tree = &f
		}
	}
	return &walker{next: first, prev: prev, bySeq: an.bySeq, lastSigned: an.last.Seq, rep: rep, tree: tree, witnessName: opt.WitnessName}, nil
}

// walk reads every segment in order, checking that each starts where the
// previous ended. It returns where the trail ends (segment, size).
func (v *walker) walk(ctx context.Context, segs []wal.Segment) (endSeg string, endOff int64, _ *Problem, _ error) {
	for si, s := range segs {
		if err := ctx.Err(); err != nil {
			return "", 0, nil, err
		}
		if s.FirstSeq != v.next {
			kind, why := "missing", fmt.Sprintf("segment starts at seq %d but the previous record was seq %d: records %d..%d are missing (segment deleted?)", s.FirstSeq, v.next-1, v.next, s.FirstSeq-1)
			if s.FirstSeq < v.next {
				kind, why = "inserted", fmt.Sprintf("segment starts at seq %d, overlapping records already seen up to seq %d", s.FirstSeq, v.next-1)
			}
			return "", 0, &Problem{Kind: kind, Segment: s.Name, Seq: s.FirstSeq, Reason: why}, nil
		}
		p, err := v.segment(s, si == len(segs)-1)
		if err != nil || p != nil {
			return "", 0, p, err
		}
		endSeg = s.Name
		if fi, err := statSize(s.Path); err == nil {
			endOff = fi
		}
	}
	return endSeg, endOff, nil, nil
}

// checkEnd fails a trail that ends before its newest signed checkpoint
// (truncated), that no checkpoint signs at all, or whose unsigned tail is
// older than opt.MaxUnsignedAge — unless opt allows unsigned records.
func checkEnd(rep *Report, an *anchors, v *walker, firstSeg, endSeg string, endOff int64, opt Options) *Problem {
	last, lastWitness := an.last, an.lastWitness
	if rep.LastSeq < last.Seq {
		why := fmt.Sprintf("the trail ends at seq %d but a signed checkpoint covers seq %d: records %d..%d were removed", rep.LastSeq, last.Seq, rep.LastSeq+1, last.Seq)
		if lastWitness.Seq == last.Seq && lastWitness.Seq > 0 {
			why += fmt.Sprintf(" (the witness %s holds head %s at seq %d; the local trail's head is seq %d)", opt.WitnessName, lastWitness.Hash, lastWitness.Seq, rep.LastSeq)
		}
		return &Problem{Kind: "truncated", Segment: endSeg, Offset: endOff, Seq: rep.LastSeq + 1, Reason: why}
	}
	if rep.Records > 0 && last.Seq == 0 {
		if !opt.AllowUnsignedTail {
			return &Problem{Kind: "unsigned", Segment: firstSeg, Seq: rep.FirstSeq,
				Reason: fmt.Sprintf("%d records but no signed checkpoint covers any of them: anyone can write such a trail (a forgery re-chained from scratch looks the same); restore checkpoints.jsonl, or pass --allow-unsigned-tail to accept an unproven trail", rep.Records)}
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("no signed checkpoint covers any of the %d records (accepted by --allow-unsigned-tail)", rep.Records))
	} else if rep.LastSeq > last.Seq {
		age := opt.Now.Sub(time.Unix(0, v.firstUnsignedTS))
		if v.firstUnsignedTS == 0 {
			age = opt.Now.Sub(time.Unix(0, last.Time))
		}
		msg := fmt.Sprintf("records %d..%d come after the last signed checkpoint (seq %d) and the first of them is %s old: their chain is intact, but until a checkpoint signs them they could have been appended or cut", last.Seq+1, rep.LastSeq, last.Seq, age.Round(time.Second))
		if age > opt.MaxUnsignedAge && !opt.AllowUnsignedTail {
			return &Problem{Kind: "unsigned-tail", Segment: endSeg, Seq: last.Seq + 1,
				Reason: msg + fmt.Sprintf("; that is older than %s, so the collector stopped signing or the tail was forged (restart the collector to sign it, or pass --allow-unsigned-tail)", opt.MaxUnsignedAge)}
		}
		rep.Warnings = append(rep.Warnings, msg)
	}
	return nil
}

// state fills in which guarantees held and which need an external witness.
func state(rep *Report, an *anchors, first uint64, opt Options) {
	last, lastWitness := an.last, an.lastWitness
	rep.Held = append(rep.Held, fmt.Sprintf("records %d..%d unaltered, in order, none missing or inserted (CRC + hash chain)", first, rep.LastSeq))
	if first == 1 {
		rep.Held = append(rep.Held, "the trail starts at seq 1")
	} else {
		rep.Held = append(rep.Held, fmt.Sprintf("the trail starts at seq %d, where a signed retention statement says it does", first))
	}
	if last.Seq > 0 {
		rep.Held = append(rep.Held, fmt.Sprintf("nothing up to seq %d was cut or rewritten (signed checkpoints, last at %s)", last.Seq, time.Unix(0, last.Time).UTC().Format(time.RFC3339)))
	}
	if rep.MerkleChecked > 0 {
		rep.Held = append(rep.Held, fmt.Sprintf("%d signed Merkle root(s) recomputed from the records (inclusion proofs: meshwarden audit prove)", rep.MerkleChecked))
	}
	switch {
	case opt.WitnessChecked && lastWitness.Seq > 0:
		rep.Held = append(rep.Held, fmt.Sprintf("the witness %s agrees up to seq %d: deleting segments together with their checkpoints would have been caught", opt.WitnessName, lastWitness.Seq))
		if rep.LastSeq > lastWitness.Seq {
			rep.NeedWitness = append(rep.NeedWitness, fmt.Sprintf("records %d..%d are not at the witness yet (it receives checkpoints once their records are exported)", lastWitness.Seq+1, rep.LastSeq))
		}
	case opt.WitnessChecked:
		rep.NeedWitness = append(rep.NeedWitness, fmt.Sprintf("the witness %s holds no checkpoint of this trail yet", opt.WitnessName))
	case opt.WitnessSkipped != "":
		rep.NeedWitness = append(rep.NeedWitness, "witness NOT checked: "+opt.WitnessSkipped+"; deleting the newest segments together with their checkpoints is not ruled out")
	default:
		rep.NeedWitness = append(rep.NeedWitness, "no witness checked (--witness): deleting the newest segments together with their checkpoints is not ruled out")
	}
	if rep.LastSeq > last.Seq {
		rep.NeedWitness = append(rep.NeedWitness, fmt.Sprintf("records after seq %d are not signed yet: their removal cannot be detected by anyone", last.Seq))
	}
}

type walker struct {
	next            uint64
	prev            string
	bySeq           map[uint64]anchor
	lastSigned      uint64
	rep             *Report
	tree            *wal.Frontier
	witnessName     string
	firstUnsignedTS int64
}

func (v *walker) segment(s wal.Segment, lastSeg bool) (*Problem, error) {
	next, prev, bySeq, lastSigned, rep := &v.next, &v.prev, v.bySeq, v.lastSigned, v.rep
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
		if v.tree != nil {
			v.tree.Add(tlog.RecordHash(rec.Payload))
		}
		if a, ok := bySeq[e.Seq]; ok {
			c := a.c
			if c.Hash != e.Hash {
				if a.witness {
					return bad("witness", fmt.Sprintf("the witness %s holds head %s at seq %d, the local trail has head %s there: the local chain was rewritten from here on, or the witness is another log", v.witnessName, c.Hash, e.Seq, e.Hash)), nil
				}
				return bad("modified", fmt.Sprintf("the record's hash differs from the signed checkpoint at seq %d: the chain was rewritten from here on", e.Seq)), nil
			}
			if c.Root != "" && v.tree != nil {
				if got := v.tree.Root().String(); got != c.Root {
					return bad("modified", fmt.Sprintf("the Merkle root over records up to seq %d is %s, the signed checkpoint says %s: records were altered", e.Seq, got, c.Root)), nil
				}
				rep.MerkleChecked++
			}
			rep.Checkpoints++
		}
		if e.Seq == lastSigned+1 {
			v.firstUnsignedTS = e.Timestamp
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
