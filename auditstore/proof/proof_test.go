package proof

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

func trail(t *testing.T, n int) (string, ed25519.PublicKey, []wal.Checkpoint) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	w, err := wal.Open(context.Background(), wal.Options{Dir: dir, Signer: priv, SegmentSize: 4096, CheckpointEvery: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 5 {
		var evs []auditevent.Event
		for j := i; j < min(i+5, n); j++ {
			evs = append(evs, auditevent.Event{ID: fmt.Sprintf("t%d-1-outcome", j), Phase: auditevent.PhaseOutcome, OpType: "FUND_TRANSFER",
				Subject: "alice", Resource: "account/42", Timestamp: int64(j + 1), TraceID: fmt.Sprintf("t%d", j), Status: 200})
		}
		if _, err := w.Append(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cps, _ := wal.ReadCheckpoints(dir)
	return dir, pub, cps
}

func TestInclusionProofs(t *testing.T) {
	dir, pub, _ := trail(t, 77)
	for _, seq := range []uint64{1, 2, 16, 33, 77} {
		p, err := ProveRecord(context.Background(), dir, seq, 0)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := CheckInclusion(pub, p)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if tr.Size != 77 {
			t.Fatalf("proved against tree %d, want the latest (77)", tr.Size)
		}
	}
	p, err := ProveRecord(context.Background(), dir, 20, 32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckInclusion(pub, p); err != nil {
		t.Fatal(err)
	}
	t.Run("altered record", func(t *testing.T) {
		q := *p
		q.Record = strings.Replace(q.Record, "alice", "mallory", 1)
		if _, err := CheckInclusion(pub, &q); err == nil {
			t.Fatal("altered record proved")
		}
	})
	t.Run("record moved to another seq", func(t *testing.T) {
		q := *p
		q.Seq = 21
		if _, err := CheckInclusion(pub, &q); err == nil {
			t.Fatal("record proved at another seq")
		}
	})
	t.Run("checkpoint signed by another key", func(t *testing.T) {
		other, _, _ := ed25519.GenerateKey(rand.Reader)
		if _, err := CheckInclusion(other, p); err == nil {
			t.Fatal("proof checked with another key")
		}
	})
	t.Run("not yet covered", func(t *testing.T) {
		if _, err := ProveRecord(context.Background(), dir, 40, 32); err == nil {
			t.Fatal("proved record 40 against the checkpoint at 32")
		}
	})
}

func TestConsistencyProofs(t *testing.T) {
	dir, pub, cps := trail(t, 77)
	if len(cps) < 3 {
		t.Fatalf("%d checkpoints", len(cps))
	}
	for _, pair := range [][2]uint64{{cps[0].Seq, cps[len(cps)-1].Seq}, {cps[1].Seq, cps[2].Seq}, {cps[1].Seq, cps[1].Seq}} {
		p, err := ProveConsistency(context.Background(), dir, pair[0], pair[1])
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := CheckConsistency(pub, p); err != nil {
			t.Fatalf("%v: %v", pair, err)
		}
	}
	// A tampered proof does not check.
	p, err := ProveConsistency(context.Background(), dir, cps[0].Seq, cps[len(cps)-1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	p.Proof[0][0] ^= 1
	if _, _, err := CheckConsistency(pub, p); err == nil {
		t.Fatal("tampered consistency proof checked")
	}
}
