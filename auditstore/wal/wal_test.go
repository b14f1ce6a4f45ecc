package wal

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

func ev(i int) auditevent.Event {
	return auditevent.Event{ID: fmt.Sprintf("trace%06d-1-intent", i), Phase: auditevent.PhaseIntent, Level: auditevent.LevelCritical,
		OpType: "FUND_TRANSFER", Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42",
		Timestamp: int64(1_700_000_000_000_000_000 + i), TraceID: fmt.Sprintf("trace%06d", i), Method: "POST", Path: "/v1/transfers"}
}

func key(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openT(t testing.TB, o Options) *WAL {
	t.Helper()
	w, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func appendN(t testing.TB, w *WAL, from, n int) auditevent.Ack {
	t.Helper()
	evs := make([]auditevent.Event, n)
	for i := range evs {
		evs[i] = ev(from + i)
	}
	ack, err := w.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// readAll returns every event in dir, checking the chain links as it goes.
func readAll(t testing.TB, dir string) []auditevent.Event {
	t.Helper()
	f, err := NewFollower(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditevent.Event
	prev := ""
	for {
		_, e, err := f.Next(math.MaxUint64)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > 0 || e.Seq == 1 {
			if err := e.VerifyLink(prev); err != nil {
				t.Fatal(err)
			}
		}
		prev = e.Hash
		out = append(out, e)
	}
}

func TestAppendAssignsSeqAndChainsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir, Signer: key(t)})
	a1 := appendN(t, w, 0, 3)
	if a1.FirstSeq != 1 || a1.LastSeq != 3 || a1.Accepted != 3 {
		t.Fatalf("ack %+v, want seq 1..3", a1)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openT(t, Options{Dir: dir, Signer: key(t)})
	a2 := appendN(t, w, 3, 2)
	w.Close()
	if a2.FirstSeq != 4 || a2.LastSeq != 5 {
		t.Fatalf("after reopen ack %+v, want seq 4..5", a2)
	}
	got := readAll(t, dir)
	if len(got) != 5 || got[3].PrevHash != a1.Hash || got[4].Hash != a2.Hash {
		t.Fatalf("reopened chain does not continue: %d records", len(got))
	}
	// The WAL's inline hashing must agree with auditevent.Event.ComputeHash.
	for _, e := range got {
		if e.ComputeHash() != e.Hash {
			t.Fatalf("seq %d: stored hash differs from auditevent.ComputeHash", e.Seq)
		}
	}
}

func TestTornTailIsTruncatedOnOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string, size int64)
	}{
		{"half a header", func(t *testing.T, p string, _ int64) { appendBytes(t, p, []byte{0x10, 0}) }},
		{"half a payload", func(t *testing.T, p string, _ int64) {
			rec := EncodeRecord(nil, &auditevent.Event{ID: "x", Hash: "y"})
			appendBytes(t, p, rec[:len(rec)-5])
		}},
		{"bad crc", func(t *testing.T, p string, _ int64) {
			rec := EncodeRecord(nil, &auditevent.Event{ID: "x", Hash: "y"})
			rec[len(rec)-2] ^= 0xff
			appendBytes(t, p, rec)
		}},
		{"zeroed tail", func(t *testing.T, p string, _ int64) { appendBytes(t, p, make([]byte, 4096)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openT(t, Options{Dir: dir})
			appendN(t, w, 0, 10)
			w.Close()
			seg := filepath.Join(dir, segmentName(1))
			fi, _ := os.Stat(seg)
			tc.tear(t, seg, fi.Size())
			w = openT(t, Options{Dir: dir})
			if st := w.Stats(); st.Head != 10 || st.RecoveredTruncatedBytes <= 0 {
				t.Fatalf("after recovery head %d truncated %d, want head 10 and a truncation", st.Head, st.RecoveredTruncatedBytes)
			}
			ack := appendN(t, w, 10, 1)
			w.Close()
			if ack.FirstSeq != 11 {
				t.Fatalf("next seq %d, want 11", ack.FirstSeq)
			}
			if got := readAll(t, dir); len(got) != 11 {
				t.Fatalf("%d records after recovery, want 11", len(got))
			}
		})
	}
}

func TestCorruptionBeforeCheckpointRefusesToOpen(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir, Signer: key(t), CheckpointEvery: 5})
	appendN(t, w, 0, 10)
	w.Close()
	seg := filepath.Join(dir, segmentName(1))
	b, _ := os.ReadFile(seg)
	b[20] ^= 1 // inside record 1, acknowledged and checkpointed
	os.WriteFile(seg, b, 0o640)
	if _, err := Open(context.Background(), Options{Dir: dir, Signer: key(t)}); err == nil {
		t.Fatal("opened a WAL corrupted before its last checkpoint; it must refuse instead of truncating acknowledged records")
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir()})
	defer w.Close()
	const senders, per = 32, 20
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range per {
				if _, err := w.Append(context.Background(), []auditevent.Event{ev(s*per + i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := w.Stats()
	if st.Events != senders*per {
		t.Fatalf("stored %d events, want %d", st.Events, senders*per)
	}
	if st.Syncs >= senders*per {
		t.Fatalf("%d fsyncs for %d concurrent appends: group commit is not grouping", st.Syncs, senders*per)
	}
	t.Logf("%d appends, %d commits, %d fsyncs", senders*per, st.Commits, st.Syncs)
}

func TestRotationCheckpointsAndRetention(t *testing.T) {
	dir := t.TempDir()
	var exported uint64
	var mu sync.Mutex
	w := openT(t, Options{Dir: dir, Signer: key(t), SegmentSize: 4096, RetainSegments: 3,
		ExportedSeq: func() uint64 { mu.Lock(); defer mu.Unlock(); return exported }})
	for i := range 40 {
		appendN(t, w, i*5, 5)
	}
	segs, _ := ListSegments(dir)
	if len(segs) < 5 {
		t.Fatalf("%d segments, want rotation by size to give ≥5 (nothing exported, so nothing may be deleted)", len(segs))
	}
	if w.Stats().Deleted != 0 {
		t.Fatal("retention deleted un-exported segments")
	}
	mu.Lock()
	exported = math.MaxUint64
	mu.Unlock()
	appendN(t, w, 200, 60) // forces more rotations, which run retention
	w.Close()
	segs, _ = ListSegments(dir)
	if len(segs) > 3 {
		t.Fatalf("%d segments left, want ≤3 after export caught up", len(segs))
	}
	cps, _ := ReadCheckpoints(dir)
	anchored := false
	for _, c := range cps {
		if c.Seq == segs[0].FirstSeq-1 {
			anchored = true
		}
	}
	if !anchored {
		t.Fatalf("first retained segment starts at %d but no checkpoint at %d anchors it", segs[0].FirstSeq, segs[0].FirstSeq-1)
	}
	f, _ := NewFollower(dir, 1)
	defer f.Close()
	_, e, err := f.Next(math.MaxUint64)
	if err != nil || e.Seq != segs[0].FirstSeq {
		t.Fatalf("follower from 1 after retention: seq %d err %v", e.Seq, err)
	}
}

func TestCheckpointSignature(t *testing.T) {
	k := key(t)
	c := Checkpoint{Seq: 7, Hash: "ab", Time: time.Now().UnixNano()}
	c.Sign(k)
	if err := c.VerifySig(k.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	c.Seq = 8
	if err := c.VerifySig(k.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("altered checkpoint verified")
	}
}

func TestKeyFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	if err := GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKey(priv, pub); err == nil {
		t.Fatal("GenerateKey overwrote an existing key")
	}
	k, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(k.Public()) {
		t.Fatal("public key does not match private key")
	}
}

// TestKeyFilesOfAnotherType: a PEM key of another algorithm is refused
// naming what the file holds and what is wanted.
func TestKeyFilesOfAnotherType(t *testing.T) {
	dir := t.TempDir()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	px, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	priv, pub := filepath.Join(dir, "ec.key"), filepath.Join(dir, "ec.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: px}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(priv); err == nil || err.Error() != priv+" holds a *ecdsa.PrivateKey, want an Ed25519 key (make one with `meshwarden audit keygen`)" {
		t.Errorf("LoadPrivateKey of an ECDSA key: %v", err)
	}
	if _, err := LoadPublicKey(pub); err == nil || err.Error() != pub+" holds a *ecdsa.PublicKey, want an Ed25519 public key" {
		t.Errorf("LoadPublicKey of an ECDSA key: %v", err)
	}
	if _, err := LoadPublicKey(priv); err == nil || !strings.HasPrefix(err.Error(), "parse "+priv+": ") {
		t.Errorf("LoadPublicKey of a private key: %v", err)
	}
}

func TestStoredRecordsRehashToTheirHash(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir})
	e := ev(1)
	e.Path = "/bad\xff\xfeutf8?q=<x>&y=\u2028"
	e.Headers = map[string]string{"x-bad\xff": "v\x01\xc3", "b": "2"}
	e.Redacted = []string{"authorization", "\xffcard"}
	if _, err := w.Append(context.Background(), []auditevent.Event{e}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got := readAll(t, dir)
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	if h := got[0].ComputeHash(); h != got[0].Hash {
		t.Fatalf("a stored record with invalid UTF-8 input does not re-hash to its hash: %s vs %s", h, got[0].Hash)
	}
}

func TestRecoveryEdgeCases(t *testing.T) {
	t.Run("empty segment after a rotation crash", func(t *testing.T) {
		dir := t.TempDir()
		w := openT(t, Options{Dir: dir, Signer: key(t)})
		a := appendN(t, w, 0, 4)
		w.Close()
		// A crash right after the next segment was created, before its first write.
		if err := os.WriteFile(filepath.Join(dir, segmentName(5)), nil, 0o640); err != nil {
			t.Fatal(err)
		}
		w = openT(t, Options{Dir: dir, Signer: key(t)})
		b := appendN(t, w, 4, 2)
		w.Close()
		if b.FirstSeq != 5 {
			t.Fatalf("first seq after recovery %d, want 5", b.FirstSeq)
		}
		got := readAll(t, dir)
		if len(got) != 6 || got[4].PrevHash != a.Hash {
			t.Fatalf("chain does not continue across the empty segment: %d records", len(got))
		}
	})
	t.Run("torn checkpoint line", func(t *testing.T) {
		dir := t.TempDir()
		w := openT(t, Options{Dir: dir, Signer: key(t), CheckpointEvery: 2})
		appendN(t, w, 0, 4)
		w.Close()
		appendBytes(t, filepath.Join(dir, CheckpointFile), []byte(`{"seq":9,"ha`))
		k := key(t)
		w = openT(t, Options{Dir: dir, Signer: k, CheckpointEvery: 2})
		appendN(t, w, 4, 4)
		w.Close()
		cps, err := ReadCheckpoints(dir)
		if err != nil {
			t.Fatalf("checkpoint log unreadable after a torn line and more checkpoints: %v", err)
		}
		if cps[len(cps)-1].Seq != 8 {
			t.Fatalf("last checkpoint seq %d, want 8", cps[len(cps)-1].Seq)
		}
	})
}

func TestOversizedEventIsRejectedAndTheWALGoesOn(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir()})
	defer w.Close()
	big := ev(1)
	big.Headers = map[string]string{"x-big": strings.Repeat("<", MaxRecordSize/4)}
	if _, err := w.Append(context.Background(), []auditevent.Event{ev(0), big}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized event: err %v, want ErrTooLarge", err)
	}
	if ack := appendN(t, w, 2, 1); ack.FirstSeq != 1 {
		t.Fatalf("after a rejected batch the next seq is %d, want 1 (nothing of it stored)", ack.FirstSeq)
	}
}

func TestRetentionByAge(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir, Signer: key(t), SegmentSize: 4096, RetainAge: time.Hour})
	for i := range 20 {
		appendN(t, w, i*5, 5)
	}
	segs, _ := ListSegments(dir)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want ≥4", len(segs))
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, s := range segs[:2] {
		if err := os.Chtimes(s.Path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	before := w.Stats().Deleted
	for i := 20; w.Stats().Rotations < uint64(len(segs)) && i < 200; i++ { // a rotation runs retention
		appendN(t, w, i*5, 5)
	}
	w.Close()
	if got := w.Stats().Deleted - before; got != 2 {
		t.Fatalf("retention by age deleted %d segments, want exactly the 2 old ones", got)
	}
	left, _ := ListSegments(dir)
	if left[0].FirstSeq != segs[2].FirstSeq {
		t.Fatalf("first segment left starts at %d, want %d", left[0].FirstSeq, segs[2].FirstSeq)
	}
}

func TestDecodeMetaMatchesFullDecode(t *testing.T) {
	for _, id := range []string{"plain-1-intent", `quo"te\back-1-intent`, "ünï<>&\u2028-1-outcome", ""} {
		t.Run(id, func(t *testing.T) {
			e := ev(1)
			e.ID, e.Seq = id, 123456789
			e.Chain("prev")
			p := appendPayload(nil, &e)
			m, ok := decodeMeta(p)
			full, err := DecodeEvent(p)
			if !ok || err != nil {
				t.Fatalf("decodeMeta ok=%v, DecodeEvent err=%v on %s", ok, err, p)
			}
			if m.ID != full.ID || m.Seq != full.Seq || m.Hash != full.Hash {
				t.Fatalf("meta %q/%d/%s, full %q/%d/%s", m.ID, m.Seq, m.Hash, full.ID, full.Seq, full.Hash)
			}
		})
	}
	if _, ok := decodeMeta([]byte(`{"seq":1}`)); ok {
		t.Fatal("decodeMeta accepted a non-canonical payload")
	}
}

func TestMinExportedKeepsWhatTheSlowestExporterLacks(t *testing.T) {
	if MinExported() != nil || MinExported(nil, nil) != nil {
		t.Fatal("MinExported of no cursors must be nil (no exporter)")
	}
	one := func() uint64 { return 7 }
	if got := MinExported(nil, one)(); got != 7 {
		t.Fatalf("one cursor: %d, want 7", got)
	}
	dir := t.TempDir()
	var nats, kafka uint64 = math.MaxUint64, 0 // JetStream has everything, Kafka nothing
	var mu sync.Mutex
	get := func(p *uint64) func() uint64 { return func() uint64 { mu.Lock(); defer mu.Unlock(); return *p } }
	w := openT(t, Options{Dir: dir, Signer: key(t), SegmentSize: 4096, RetainSegments: 2,
		ExportedSeq: MinExported(get(&nats), get(&kafka))})
	for i := range 40 {
		appendN(t, w, i*5, 5)
	}
	if w.Stats().Deleted != 0 {
		t.Fatal("retention deleted segments one exporter (Kafka, cursor 0) has not delivered")
	}
	mu.Lock()
	kafka = math.MaxUint64
	mu.Unlock()
	appendN(t, w, 200, 60)
	w.Close()
	if w.Stats().Deleted == 0 {
		t.Fatal("retention deleted nothing once both exporters caught up")
	}
}

// TestMaxPayloadLenIsExact: the size Append checks before queueing a batch
// is the record's payload at the largest seq, to the byte, so no record the
// writer builds can be larger than what Append let through (the writer
// would otherwise have to fail the log).
func TestMaxPayloadLenIsExact(t *testing.T) {
	for _, e := range []auditevent.Event{ev(0), {ID: "x", Phase: auditevent.PhaseIntent, OpType: "Ü", Timestamp: 1, Headers: map[string]string{"a": "<\x01>"}}} {
		_, tmpl := e.AppendTemplate(nil)
		e.Seq, e.PrevHash, e.Hash = 1<<64-1, strings.Repeat("a", 64), strings.Repeat("b", 64)
		if got, want := maxPayloadLen(tmpl), len(EncodeRecord(nil, &e))-headerSize; got != want {
			t.Fatalf("maxPayloadLen %d, the largest record's payload is %d bytes", got, want)
		}
	}
}
