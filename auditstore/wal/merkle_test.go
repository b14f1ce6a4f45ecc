package wal

import (
	"context"
	"crypto/ed25519"
	"math"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

func TestFrontierAgreesWithTlog(t *testing.T) {
	var f Frontier
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for n := int64(0); n < 70; n++ {
		data := []byte{byte(n), 'x'}
		hs, err := tlog.StoredHashes(n, data, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		f.Add(tlog.RecordHash(data))
		want, err := tlog.TreeHash(n+1, r)
		if err != nil {
			t.Fatal(err)
		}
		if f.Root() != want {
			t.Fatalf("size %d: frontier root %v, tlog %v", n+1, f.Root(), want)
		}
	}
}

func TestCheckpointsAreSignedNotesWithMerkleRoot(t *testing.T) {
	dir := t.TempDir()
	k := key(t)
	w := openT(t, Options{Dir: dir, Signer: k, SegmentSize: 4096, CheckpointEvery: 7})
	for i := range 10 {
		appendN(t, w, i*3, 3)
	}
	w.Close()
	cps, err := ReadCheckpoints(dir)
	if err != nil || len(cps) < 3 {
		t.Fatalf("%d checkpoints, err %v", len(cps), err)
	}
	pub := k.Public().(ed25519.PublicKey)
	v, err := NewNoteVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cps {
		if c.Note == "" || c.Root == "" {
			t.Fatalf("checkpoint at %d has no note or root", c.Seq)
		}
		if err := c.OpenNote(v); err != nil {
			t.Fatal(err)
		}
		n, err := note.Open([]byte(c.Note), note.VerifierList(v))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := FrontierAt(c); err != nil {
			t.Fatal(err)
		}
		_ = n
	}
	// An altered line no longer matches its note.
	c := cps[len(cps)-1]
	c.Hash = "00" + c.Hash[2:]
	if err := c.OpenNote(v); err == nil {
		t.Fatal("a checkpoint line whose chain head was changed still matched its note")
	}
	// Another key does not open it.
	other, _ := NewNoteVerifier(key(t).Public().(ed25519.PublicKey))
	if err := cps[0].OpenNote(other); err == nil {
		t.Fatal("note opened with another key")
	}
}

func TestDuplicateIDReturnsOriginalSeqAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir, Signer: key(t)})
	first := appendN(t, w, 0, 5)
	if first.FirstSeq != 1 || first.LastSeq != 5 || len(first.Duplicates) != 0 {
		t.Fatalf("first ack %+v", first)
	}
	// Same ids again plus one new one, and one repeated inside the batch.
	evs := []auditevent.Event{ev(2), ev(100), ev(100), ev(4)}
	ack, err := w.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Accepted != 1 || ack.FirstSeq != 6 || ack.LastSeq != 6 || len(ack.Duplicates) != 3 ||
		ack.Duplicates[0].Seq != 3 || ack.Duplicates[1].Seq != 6 || ack.Duplicates[2].Seq != 5 {
		t.Fatalf("ack %+v", ack)
	}
	if w.Stats().Duplicates != 3 {
		t.Fatalf("stats: %d duplicates", w.Stats().Duplicates)
	}
	w.Close()
	w = openT(t, Options{Dir: dir, Signer: key(t)})
	ack, err = w.Append(context.Background(), []auditevent.Event{ev(1)})
	if err != nil {
		t.Fatal(err)
	}
	if ack.Accepted != 0 || len(ack.Duplicates) != 1 || ack.Duplicates[0].Seq != 2 {
		t.Fatalf("after reopen: ack %+v", ack)
	}
	w.Close()
	if n := len(readAll(t, dir)); n != 6 {
		t.Fatalf("%d records stored, want 6", n)
	}
}

func TestRetentionSignsWhereTheTrailStartsAndKeepsTheTree(t *testing.T) {
	dir := t.TempDir()
	k := key(t)
	w := openT(t, Options{Dir: dir, Signer: k, SegmentSize: 4096, RetainSegments: 2,
		ExportedSeq: func() uint64 { return math.MaxUint64 }})
	for i := range 30 {
		appendN(t, w, i*5, 5)
	}
	w.Close()
	segs, _ := ListSegments(dir)
	if segs[0].FirstSeq == 1 {
		t.Fatal("retention deleted nothing")
	}
	cps, _ := ReadCheckpoints(dir)
	started := false
	for _, c := range cps {
		if c.Start == segs[0].FirstSeq {
			started = true
			if err := c.VerifySig(k.Public().(ed25519.PublicKey)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !started {
		t.Fatalf("no signed retention statement starts the trail at %d", segs[0].FirstSeq)
	}
	// Reopen: the tree resumes from the signed frontier and stays in step.
	w = openT(t, Options{Dir: dir, Signer: k, SegmentSize: 4096})
	appendN(t, w, 1000, 3)
	w.Close()
	cps, _ = ReadCheckpoints(dir)
	last := cps[len(cps)-1]
	if last.Seq != 153 || last.Root == "" {
		t.Fatalf("last checkpoint %+v", last)
	}
	if _, err := FrontierAt(last); err != nil {
		t.Fatal(err)
	}
}
