package export

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
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

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StreamSeqs returns how many messages the stream holds and the set of
// Mw-Audit-Seq values seen.
func streamSeqs(t *testing.T, url, stream, subject string) (int, map[uint64]int) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = info
	total := subjectCount(t, url, subject)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for len(seen) < total || sum(seen) < total {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			v, _ := strconv.ParseUint(m.Headers().Get("Mw-Audit-Seq"), 10, 64)
			seen[v]++
			n++
		}
		if n == 0 {
			break
		}
	}
	return total, seen
}

func sum(m map[uint64]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
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
	waitFor(t, "export of 1000", 20*time.Second, func() bool { return x.Exported() == 1000 })

	ns.Stop()
	appendN(t, w, 1000, 1500) // ingest goes on while JetStream is down
	waitFor(t, "the exporter to notice the outage", 20*time.Second, func() bool { return x.Failures() > 0 })
	if x.Exported() != 1000 {
		t.Fatalf("cursor moved to %d while JetStream was down", x.Exported())
	}
	ns.Restart()
	waitFor(t, "export to catch up to 2500", 30*time.Second, func() bool { return x.Exported() == 2500 })
	cancel()
	<-done

	if c, _ := ReadCursor(dir); c != 2500 {
		t.Fatalf("persisted cursor %d, want 2500", c)
	}
	total, seen := streamSeqs(t, ns.URL(), "MESHWARDEN_AUDIT", "meshwarden.audit.events")
	if total != 2500 || len(seen) != 2500 {
		t.Fatalf("stream holds %d messages, %d distinct seqs; want 2500 and 2500", total, len(seen))
	}
	for s := uint64(1); s <= 2500; s++ {
		if seen[s] != 1 {
			t.Fatalf("seq %d seen %d times downstream", s, seen[s])
		}
	}
	cps, _ := wal.ReadCheckpoints(dir)
	if len(cps) < 5 {
		t.Fatalf("%d checkpoints, want ≥5 (every 500 of 2500 records)", len(cps))
	}
	waitFor(t, "checkpoints in JetStream", 10*time.Second, func() bool { return subjectCount(t, ns.URL(), "meshwarden.audit.checkpoints") >= len(cps)-1 })

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
	waitFor(t, "re-export", 20*time.Second, func() bool { return x2.Exported() == 2500 })
	cancel2()
	<-done
	if total, _ := streamSeqs(t, ns.URL(), "MESHWARDEN_AUDIT", "meshwarden.audit.events"); total != 2500 {
		t.Fatalf("after re-sending 700 records the stream holds %d, want 2500 (dedup by Nats-Msg-Id)", total)
	}
}

// subjectCount is how many messages the audit stream holds on subject.
func subjectCount(t *testing.T, url, subject string) int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "MESHWARDEN_AUDIT")
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return -1
	}
	return int(info.State.Subjects[subject])
}
