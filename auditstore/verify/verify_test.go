package verify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

type rawRec struct {
	off int64
	b   []byte // header + payload
	e   auditevent.Event
}

type trail struct {
	dir  string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
	segs []wal.Segment
	recs map[string][]rawRec // by segment name
	at   map[uint64]struct {
		seg string
		idx int
	}
}

// writeCheckpoints replaces the checkpoint log of dir with cps.
func writeCheckpoints(t *testing.T, dir string, cps []wal.Checkpoint) {
	t.Helper()
	var b []byte
	for _, c := range cps {
		line, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(b, line...), '\n')
	}
	if err := os.WriteFile(filepath.Join(dir, wal.CheckpointFile), b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// cutLastSegment is the truncation attack: it deletes the last segment and
// every checkpoint from its first seq on. It returns the checkpoints held
// before the cut (what a witness keeps).
func (tr *trail) cutLastSegment(t *testing.T) []wal.Checkpoint {
	t.Helper()
	cps, err := wal.ReadCheckpoints(tr.dir)
	if err != nil {
		t.Fatal(err)
	}
	last := tr.segs[len(tr.segs)-1]
	if err := os.Remove(last.Path); err != nil {
		t.Fatal(err)
	}
	var keep []wal.Checkpoint
	for _, c := range cps {
		if c.Seq < last.FirstSeq {
			keep = append(keep, c)
		}
	}
	writeCheckpoints(t, tr.dir, keep)
	return cps
}

// build writes n records (3 per batch) into a WAL with small segments and
// signed checkpoints, closes it and indexes every record.
func build(t *testing.T, n int, signed bool) *trail {
	t.Helper()
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	o := wal.Options{Dir: dir, SegmentSize: 2048, CheckpointEvery: 8}
	if signed {
		o.Signer = priv
	}
	w, err := wal.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 3 {
		var evs []auditevent.Event
		for j := i; j < min(i+3, n); j++ {
			evs = append(evs, auditevent.Event{ID: fmt.Sprintf("trace%04d-1-intent", j+1), Phase: auditevent.PhaseIntent,
				OpType: "FUND_TRANSFER", Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42",
				Timestamp: int64(1_700_000_000_000_000_000 + j), TraceID: fmt.Sprintf("trace%04d", j+1)})
		}
		if _, err := w.Append(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tr := index(t, dir, pub)
	tr.priv = priv
	return tr
}

func index(t *testing.T, dir string, pub ed25519.PublicKey) *trail {
	t.Helper()
	tr := &trail{dir: dir, pub: pub, recs: map[string][]rawRec{}, at: map[uint64]struct {
		seg string
		idx int
	}{}}
	segs, err := wal.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr.segs = segs
	for _, s := range segs {
		data, _ := os.ReadFile(s.Path)
		for off := 0; off < len(data); {
			n := int(binary.LittleEndian.Uint32(data[off:]))
			b := append([]byte(nil), data[off:off+8+n]...)
			e, err := wal.DecodeEvent(b[8:])
			if err != nil {
				t.Fatal(err)
			}
			tr.at[e.Seq] = struct {
				seg string
				idx int
			}{s.Name, len(tr.recs[s.Name])}
			tr.recs[s.Name] = append(tr.recs[s.Name], rawRec{int64(off), b, e})
			off += 8 + n
		}
	}
	return tr
}

func (tr *trail) rec(seq uint64) (string, rawRec) {
	a := tr.at[seq]
	return a.seg, tr.recs[a.seg][a.idx]
}

func (tr *trail) write(t *testing.T, seg string, recs []rawRec) {
	t.Helper()
	var buf []byte
	for _, r := range recs {
		buf = append(buf, r.b...)
	}
	if err := os.WriteFile(filepath.Join(tr.dir, seg), buf, 0o640); err != nil {
		t.Fatal(err)
	}
}

func fixCRC(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)-8))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crc32.MakeTable(crc32.Castagnoli)))
}

func TestIntactTrailVerifies(t *testing.T) {
	tr := build(t, 60, true)
	if len(tr.segs) < 3 {
		t.Fatalf("want several segments, got %d", len(tr.segs))
	}
	rep, err := Dir(context.Background(), tr.dir, tr.pub)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records != 60 || rep.LastSeq != 60 || rep.Checkpoints == 0 {
		var b bytes.Buffer
		rep.Format(&b)
		t.Fatalf("intact trail: %s", b.String())
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	type want struct {
		kind string
		seq  uint64
		id   bool // the problem names the record id
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, tr *trail) (seg string, off int64)
		want   want
	}{
		{"byte flip", func(t *testing.T, tr *trail) (string, int64) {
			seg, r := tr.rec(20)
			recs := tr.recs[seg]
			r.b[len(r.b)-30] ^= 0x01
			recs[tr.at[20].idx] = r
			tr.write(t, seg, recs)
			return seg, r.off
		}, want{"corrupt", 20, false}},
		{"modified with checksum recomputed", func(t *testing.T, tr *trail) (string, int64) {
			seg, r := tr.rec(20)
			recs := tr.recs[seg]
			r.b = bytes.Replace(r.b, []byte("account/42"), []byte("account/43"), 1)
			fixCRC(r.b)
			recs[tr.at[20].idx] = r
			tr.write(t, seg, recs)
			return seg, r.off
		}, want{"modified", 20, true}},
		{"record deleted", func(t *testing.T, tr *trail) (string, int64) {
			seg, r := tr.rec(20)
			i := tr.at[20].idx
			if i+1 >= len(tr.recs[seg]) {
				t.Skip("record 20 is last in its segment; layout changed")
			}
			recs := append(append([]rawRec{}, tr.recs[seg][:i]...), tr.recs[seg][i+1:]...)
			tr.write(t, seg, recs)
			return seg, r.off // record 21 now sits where 20 was
		}, want{"out-of-sequence", 21, true}},
		{"record inserted (copy)", func(t *testing.T, tr *trail) (string, int64) {
			seg, r := tr.rec(20)
			i := tr.at[20].idx
			recs := append(append(append([]rawRec{}, tr.recs[seg][:i+1]...), r), tr.recs[seg][i+1:]...)
			tr.write(t, seg, recs)
			return seg, r.off + int64(len(r.b))
		}, want{"out-of-sequence", 20, true}},
		{"records reordered", func(t *testing.T, tr *trail) (string, int64) {
			seg, r := tr.rec(20)
			i := tr.at[20].idx
			if i+1 >= len(tr.recs[seg]) {
				t.Skip("record 20 is last in its segment; layout changed")
			}
			recs := append([]rawRec{}, tr.recs[seg]...)
			recs[i], recs[i+1] = recs[i+1], recs[i]
			tr.write(t, seg, recs)
			return seg, r.off
		}, want{"out-of-sequence", 21, true}},
		{"tail truncated at a record boundary", func(t *testing.T, tr *trail) (string, int64) {
			last := tr.segs[len(tr.segs)-1].Name
			recs := tr.recs[last]
			if len(recs) < 2 {
				t.Skip("last segment too short")
			}
			tr.write(t, last, recs[:len(recs)-2])
			return last, recs[len(recs)-2].off
		}, want{"truncated", 59, false}},
		{"tail truncated mid-record", func(t *testing.T, tr *trail) (string, int64) {
			last := tr.segs[len(tr.segs)-1].Name
			recs := append([]rawRec{}, tr.recs[last]...)
			r := recs[len(recs)-1]
			r.b = r.b[:len(r.b)/2]
			recs[len(recs)-1] = r
			tr.write(t, last, recs)
			return last, r.off
		}, want{"truncated", 60, false}},
		{"last segment deleted", func(t *testing.T, tr *trail) (string, int64) {
			last := tr.segs[len(tr.segs)-1]
			os.Remove(last.Path)
			prev := tr.segs[len(tr.segs)-2]
			fi, _ := os.Stat(prev.Path)
			return prev.Name, fi.Size()
		}, want{"truncated", 0, false}},
		{"middle segment deleted", func(t *testing.T, tr *trail) (string, int64) {
			mid := tr.segs[1]
			os.Remove(mid.Path)
			return tr.segs[2].Name, 0
		}, want{"missing", 0, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := build(t, 60, true)
			seg, off := tc.tamper(t, tr)
			rep, err := Dir(context.Background(), tr.dir, tr.pub)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			rep.Format(&out)
			p := rep.Problem
			if p == nil {
				t.Fatalf("tampering not detected:\n%s", out.String())
			}
			wantSeq := tc.want.seq
			if tc.name == "last segment deleted" {
				wantSeq = tr.segs[len(tr.segs)-1].FirstSeq
			}
			if tc.name == "middle segment deleted" {
				wantSeq = tr.segs[2].FirstSeq
			}
			if p.Kind != tc.want.kind || p.Seq != wantSeq || p.Segment != seg || p.Offset != off {
				t.Fatalf("got %s at %s offset %d seq %d, want %s at %s offset %d seq %d\n%s",
					p.Kind, p.Segment, p.Offset, p.Seq, tc.want.kind, seg, off, wantSeq, out.String())
			}
			if wantID := fmt.Sprintf("trace%04d-1-intent", wantSeq); tc.want.id && p.ID != wantID {
				t.Fatalf("problem names id %q, want %q", p.ID, wantID)
			}
			if !strings.Contains(out.String(), "first bad record: segment "+seg) {
				t.Fatalf("report does not name the first bad record:\n%s", out.String())
			}
		})
	}
}

func TestVerifyCheckpointAnchors(t *testing.T) {
	t.Run("forged checkpoint", func(t *testing.T) {
		tr := build(t, 30, true)
		cps, _ := wal.ReadCheckpoints(tr.dir)
		k := cps[0].Seq
		p := filepath.Join(tr.dir, wal.CheckpointFile)
		b, _ := os.ReadFile(p)
		b = bytes.Replace(b, fmt.Appendf(nil, `"seq":%d,`, k), fmt.Appendf(nil, `"seq":%d,`, k+1), 1)
		os.WriteFile(p, b, 0o640)
		rep, _ := Dir(context.Background(), tr.dir, tr.pub)
		if rep.OK() || rep.Problem.Kind != "checkpoint" || rep.Problem.Seq != k+1 {
			t.Fatalf("forged checkpoint not caught: %+v", rep.Problem)
		}
	})
	t.Run("wrong public key", func(t *testing.T) {
		tr := build(t, 10, true)
		other, _, _ := ed25519.GenerateKey(rand.Reader)
		rep, _ := Dir(context.Background(), tr.dir, other)
		if rep.OK() {
			t.Fatal("verified with the wrong public key")
		}
	})
	t.Run("chain rewritten after a checkpoint", func(t *testing.T) {
		// An attacker who rewrites a checkpointed record k and re-chains
		// everything after it still cannot forge the checkpoint at seq k.
		tr := build(t, 30, true)
		cps, _ := wal.ReadCheckpoints(tr.dir)
		k := cps[0].Seq
		seg, _ := tr.rec(k)
		prev := tr.recs[seg][tr.at[k].idx].e.PrevHash
		recs := tr.recs[seg]
		for i := tr.at[k].idx; i < len(recs); i++ {
			e := recs[i].e
			if e.Seq == k {
				e.Resource = "account/99"
			}
			prev = e.Chain(prev)
			recs[i].b = wal.EncodeRecord(nil, &e)
			recs[i].e = e
		}
		tr.write(t, seg, recs)
		rep, _ := Dir(context.Background(), tr.dir, tr.pub)
		if rep.OK() || rep.Problem.Seq != k || rep.Problem.Kind != "modified" {
			t.Fatalf("re-chained rewrite not caught at seq %d: %+v", k, rep.Problem)
		}
	})
	// With checkpoints it was found in review: this passed as "OK … seq
	// 34..". A rotation checkpoint anchors the chain, but only a signed
	// retention statement may move the start of the trail.
	for _, c := range []struct {
		name        string
		checkpoints bool
	}{
		{"first segment deleted although a checkpoint anchors the next", true},
		{"first segment deleted without a checkpoint", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := build(t, 60, c.checkpoints)
			os.Remove(tr.segs[0].Path)
			rep, _ := Dir(context.Background(), tr.dir, tr.pub)
			if rep.OK() || rep.Problem.Kind != "unanchored" || rep.Problem.Seq != tr.segs[1].FirstSeq {
				t.Fatalf("deleted first segment not caught: %+v", rep.Problem)
			}
		})
	}
	t.Run("retention verifies from its signed start", func(t *testing.T) {
		dir := t.TempDir()
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		w, err := wal.Open(context.Background(), wal.Options{Dir: dir, SegmentSize: 2048, Signer: priv, RetainSegments: 2})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			w.Append(context.Background(), []auditevent.Event{{ID: fmt.Sprintf("t%d-1-intent", i), Phase: auditevent.PhaseIntent, OpType: "X", Subject: "s", Resource: "r", Timestamp: 1, TraceID: "t"}})
		}
		w.Close()
		segs, _ := wal.ListSegments(dir)
		rep, _ := Dir(context.Background(), dir, pub)
		if segs[0].FirstSeq == 1 || !rep.OK() || rep.FirstSeq != segs[0].FirstSeq || rep.MerkleChecked == 0 {
			t.Fatalf("retained trail should verify from seq %d with Merkle roots: %+v %+v", segs[0].FirstSeq, rep.Problem, rep)
		}
	})
}

func TestExternalCheckpointsCatchTruncationWithDeletedLog(t *testing.T) {
	tr := build(t, 60, true)
	saved := filepath.Join(t.TempDir(), "from-jetstream.jsonl")
	b, _ := os.ReadFile(filepath.Join(tr.dir, wal.CheckpointFile))
	os.WriteFile(saved, b, 0o640)
	// The attacker cuts the last segment and every checkpoint after the cut.
	last := tr.segs[len(tr.segs)-1]
	tr.cutLastSegment(t)
	if rep, _ := Dir(context.Background(), tr.dir, tr.pub); !rep.OK() {
		t.Fatalf("expected the local view alone to look intact (that is the attack): %+v", rep.Problem)
	}
	ext, err := wal.ReadCheckpointFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := DirWith(context.Background(), tr.dir, tr.pub, ext)
	if rep.OK() || rep.Problem.Kind != "truncated" || rep.Problem.Seq != last.FirstSeq {
		t.Fatalf("external checkpoints did not expose the truncation: %+v", rep.Problem)
	}
}

// rechain rewrites every record from seq k on (changing the subject of k)
// and fixes every link, as a forger with write access would.
func (tr *trail) rechain(t *testing.T, k uint64) {
	t.Helper()
	prev := ""
	for _, sg := range tr.segs {
		recs := tr.recs[sg.Name]
		for i := range recs {
			e := recs[i].e
			if e.Seq < k {
				prev = e.Hash
				continue
			}
			if e.Seq == k {
				e.Subject = "spiffe://dc1/ns/default/svc/mallory"
			}
			prev = e.Chain(prev)
			recs[i].b = wal.EncodeRecord(nil, &e)
			recs[i].e = e
		}
		tr.write(t, sg.Name, recs)
	}
}

func format(r *Report) string {
	var b bytes.Buffer
	r.Format(&b)
	return b.String()
}

func TestVerifyFailsClosed(t *testing.T) {
	t.Run("complete forgery without checkpoints", func(t *testing.T) {
		// Found in review: re-chain with one subject changed, delete
		// checkpoints.jsonl, and verify said OK.
		tr := build(t, 30, true)
		tr.rechain(t, 5)
		os.Remove(filepath.Join(tr.dir, wal.CheckpointFile))
		rep, _ := Dir(context.Background(), tr.dir, tr.pub)
		if rep.OK() || rep.Problem.Kind != "unsigned" {
			t.Fatalf("forgery passed:\n%s", format(rep))
		}
	})
	t.Run("checkpoint log deleted from an honest trail", func(t *testing.T) {
		tr := build(t, 30, true)
		os.Remove(filepath.Join(tr.dir, wal.CheckpointFile))
		rep, _ := Dir(context.Background(), tr.dir, tr.pub)
		if rep.OK() || rep.Problem.Kind != "unsigned" {
			t.Fatalf("trail without checkpoints passed:\n%s", format(rep))
		}
		rep, _ = Verify(context.Background(), tr.dir, tr.pub, Options{AllowUnsignedTail: true})
		if !rep.OK() || len(rep.Warnings) == 0 || !strings.Contains(format(rep), "cannot be ruled out") {
			t.Fatalf("--allow-unsigned-tail should accept it with a warning:\n%s", format(rep))
		}
	})
	t.Run("unsigned tail older than the bound", func(t *testing.T) {
		tr := build(t, 30, true)
		w, err := wal.Open(context.Background(), wal.Options{Dir: tr.dir, SegmentSize: 2048}) // no signer: nothing signs the tail
		if err != nil {
			t.Fatal(err)
		}
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		w.Append(context.Background(), []auditevent.Event{{ID: "late-1-intent", Phase: auditevent.PhaseIntent, OpType: "X", Subject: "s", Resource: "r", Timestamp: ts.UnixNano(), TraceID: "late"}})
		w.Close()
		rep, _ := Verify(context.Background(), tr.dir, tr.pub, Options{Now: ts.Add(10 * time.Minute)})
		if rep.OK() || rep.Problem.Kind != "unsigned-tail" || rep.Problem.Seq != 31 {
			t.Fatalf("stale unsigned tail passed:\n%s", format(rep))
		}
		rep, _ = Verify(context.Background(), tr.dir, tr.pub, Options{Now: ts.Add(10 * time.Second)})
		if !rep.OK() || !strings.Contains(format(rep), "records after seq 30 are not signed yet") {
			t.Fatalf("a fresh unsigned tail should pass, saying it is unsigned:\n%s", format(rep))
		}
		rep, _ = Verify(context.Background(), tr.dir, tr.pub, Options{Now: ts.Add(time.Hour), AllowUnsignedTail: true})
		if !rep.OK() {
			t.Fatalf("--allow-unsigned-tail:\n%s", format(rep))
		}
	})
	t.Run("OK output says what held and what needs a witness", func(t *testing.T) {
		tr := build(t, 30, true)
		rep, _ := Dir(context.Background(), tr.dir, tr.pub)
		out := format(rep)
		if !rep.OK() || rep.MerkleChecked == 0 || !strings.Contains(out, "held:") || !strings.Contains(out, "needs witness: no witness checked") {
			t.Fatalf("report:\n%s", out)
		}
	})
	t.Run("checkpoint note altered", func(t *testing.T) {
		tr := build(t, 30, true)
		cps, _ := wal.ReadCheckpoints(tr.dir)
		cps[0].Root = cps[1].Root
		writeCheckpoints(t, tr.dir, cps)
		rep, _ := Dir(context.Background(), tr.dir, tr.pub)
		if rep.OK() || rep.Problem.Kind != "checkpoint" {
			t.Fatalf("altered root passed:\n%s", format(rep))
		}
	})
}

func TestWitness(t *testing.T) {
	t.Run("deleting the last segment and its checkpoints is caught", func(t *testing.T) {
		tr := build(t, 60, true)
		witness := tr.cutLastSegment(t)
		rep, _ := Verify(context.Background(), tr.dir, tr.pub, Options{Witness: witness, WitnessName: "nats://w", WitnessChecked: true})
		if rep.OK() || rep.Problem.Kind != "truncated" || !strings.Contains(rep.Problem.Reason, "witness nats://w holds head") {
			t.Fatalf("witness did not expose the truncation:\n%s", format(rep))
		}
	})
	t.Run("a disagreeing witness fails naming both heads", func(t *testing.T) {
		tr := build(t, 30, true)
		// A witness fed by a rewritten collector that holds the real key:
		// same seqs, other heads, valid signatures.
		cps, _ := wal.ReadCheckpoints(tr.dir)
		var witness []wal.Checkpoint
		for i, c := range cps {
			c.Note, c.Root, c.Frontier = "", "", nil
			c.Hash = fmt.Sprintf("%064x", i+1)
			c.Sign(tr.priv)
			witness = append(witness, c)
		}
		rep, _ := Verify(context.Background(), tr.dir, tr.pub, Options{Witness: witness, WitnessName: "nats://w", WitnessChecked: true})
		if rep.OK() || rep.Problem.Kind != "witness" || !strings.Contains(rep.Problem.Reason, witness[0].Hash) || !strings.Contains(rep.Problem.Reason, "local") {
			t.Fatalf("disagreeing witness:\n%s", format(rep))
		}
	})
	t.Run("an agreeing witness is reported as held", func(t *testing.T) {
		tr := build(t, 30, true)
		witness, _ := wal.ReadCheckpoints(tr.dir)
		rep, _ := Verify(context.Background(), tr.dir, tr.pub, Options{Witness: witness, WitnessName: "nats://w", WitnessChecked: true})
		if !rep.OK() || !strings.Contains(format(rep), "the witness nats://w agrees up to seq 30") {
			t.Fatalf("report:\n%s", format(rep))
		}
	})
}
