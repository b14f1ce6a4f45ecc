package faulttest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
)

// streamSeqs counts the stream's messages and each Mw-Audit-Seq seen.
func streamSeqs(t *testing.T, url string) (int, map[uint64]int) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "MESHWARDEN_AUDIT")
	if err != nil {
		return 0, nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = info
	total := msgCount(t, url)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"meshwarden.audit.events"}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for got := 0; got < total; {
		b, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			v, _ := strconv.ParseUint(m.Headers().Get("Mw-Audit-Seq"), 10, 64)
			seen[v]++
			n++
		}
		if n == 0 {
			break
		}
		got += n
	}
	return total, seen
}

func msgCount(t *testing.T, url string) int {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "MESHWARDEN_AUDIT")
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("meshwarden.audit.events"))
	if err != nil {
		return -1
	}
	return int(info.State.Subjects["meshwarden.audit.events"])
}

func TestJetStreamDownThenUpNothingMissing(t *testing.T) {
	ns := natstest.Start(t)
	e := newEnv(t)
	args := []string{"--nats", ns.URL(), "--segment-size", "131072"}
	p := e.start(t, args...)
	sendN := func(p *proc, batches int) int {
		n := 0
		for range batches {
			body, ids := batch(50)
			if _, ok := send(p.addr, body); !ok {
				t.Fatalf("send failed:\n%s", p.stderr.String())
			}
			n += len(ids)
		}
		return n
	}
	total := sendN(p, 40) // 2000
	waitFor(t, "2000 records in JetStream", 30*time.Second, func() bool { return msgCount(t, ns.URL()) == total })

	ns.Stop()               // JetStream outage
	total += sendN(p, 40)   // the collector keeps acknowledging
	p.kill9(t)              // and even crashes during the outage
	p = e.start(t, args...) // restarts; its exporter resumes from the persisted cursor
	total += sendN(p, 20)   // 5000
	ns.Restart()
	waitFor(t, "5000 records in JetStream", 60*time.Second, func() bool { return msgCount(t, ns.URL()) == total })
	p.stop(t)

	n, seen := streamSeqs(t, ns.URL())
	if n != 5000 || len(seen) != 5000 {
		t.Fatalf("JetStream holds %d messages (%d distinct seqs), want 5000", n, len(seen))
	}
	for s := uint64(1); s <= 5000; s++ {
		if seen[s] != 1 {
			t.Fatalf("seq %d delivered %d times downstream, want once", s, seen[s])
		}
	}
	out, code := verifyCLI(t, e, e.dir)
	if code != 0 {
		t.Fatalf("verify:\n%s", out)
	}
	if c := subjectCount(t, ns.URL(), "meshwarden.audit.checkpoints"); c < 1 {
		t.Fatalf("no signed checkpoint reached JetStream (%d)", c)
	}
}

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

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
