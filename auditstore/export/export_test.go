package export

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

func appendN(t *testing.T, w *wal.WAL, from, n int) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		var evs []auditevent.Event
		for j := i; j < min(i+100, n); j++ {
			evs = append(evs, auditevent.Event{ID: fmt.Sprintf("t%06d-1-intent", from+j), Phase: auditevent.PhaseIntent, OpType: "PAY", Timestamp: int64(1 + from + j)})
		}
		if _, err := w.Append(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExportSurvivesOutageAndResumes(t *testing.T) {
	ns := natstest.Start(t)
	dir := t.TempDir()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	w, err := wal.Open(context.Background(), wal.Options{Dir: dir, SegmentSize: 64 << 10, Signer: k, CheckpointEvery: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	x, err := New(Config{Dir: dir, URL: ns.URL(), Batch: 128})
	if err != nil {
		t.Fatal(err)
	}
	x.Follow(w.Durable, w.Changed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()

	appendN(t, w, 0, 1000)
	probe.Until(t, "export of 1000", 20*time.Second, func() bool { return x.Exported() == 1000 })

	ns.Stop()
	appendN(t, w, 1000, 1500) // ingest goes on while JetStream is down
	probe.Until(t, "the exporter to notice the outage", 20*time.Second, func() bool { return x.Failures() > 0 })
	if x.Exported() != 1000 {
		t.Fatalf("cursor moved to %d while JetStream was down", x.Exported())
	}
	ns.Restart()
	probe.Until(t, "export to catch up to 2500", 30*time.Second, func() bool { return x.Exported() == 2500 })
	cps, _ := wal.ReadCheckpoints(dir)
	if len(cps) < 5 {
		t.Fatalf("%d checkpoints, want ≥5 (every 500 of 2500 records)", len(cps))
	}
	// Checkpoints follow their records once the exporter is idle: wait while
	// it still runs, not after cancelling it.
	probe.Until(t, "checkpoints in JetStream", 10*time.Second, func() bool { return natstest.SubjectCount(ns.URL(), "meshwarden.audit.checkpoints") >= len(cps) })
	cancel()
	<-done

	if c, _ := ReadCursor(dir); c != 2500 {
		t.Fatalf("persisted cursor %d, want 2500", c)
	}
	natstest.WantEachSeqOnce(t, ns.URL(), natstest.EventsSubject, 2500)

	// A crash after publishing but before saving the cursor re-sends; the
	// Nats-Msg-Id makes JetStream drop the copies.
	if err := os.WriteFile(filepath.Join(dir, CursorFile), []byte("1800\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	x2, err := New(Config{Dir: dir, URL: ns.URL()})
	if err != nil {
		t.Fatal(err)
	}
	x2.Follow(w.Durable, w.Changed)
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- x2.Run(ctx2) }()
	probe.Until(t, "re-export", 20*time.Second, func() bool { return x2.Exported() == 2500 })
	cancel2()
	<-done
	if total, _ := natstest.StreamSeqs(t, ns.URL(), natstest.EventsSubject); total != 2500 {
		t.Fatalf("after re-sending 700 records the stream holds %d, want 2500 (dedup by Nats-Msg-Id)", total)
	}
}
