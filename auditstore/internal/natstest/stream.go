package natstest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream, EventsSubject and CheckpointsSubject are the exporter's defaults.
const (
	Stream             = "MESHWARDEN_AUDIT"
	EventsSubject      = "meshwarden.audit.events"
	CheckpointsSubject = "meshwarden.audit.checkpoints"
)

// SubjectCount is how many messages the audit stream holds on subject, or
// -1 while the server or the stream cannot be reached (tests poll it
// across outages).
func SubjectCount(url, subject string) int {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, Stream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return -1
	}
	return int(info.State.Subjects[subject])
}

// StreamSeqs reads every message on subject of the audit stream and
// returns how many the stream holds and how often each Mw-Audit-Seq value
// was seen.
func StreamSeqs(t testing.TB, url, subject string) (int, map[uint64]int) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	total := SubjectCount(url, subject)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for got := 0; got < total; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
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
		got += n
	}
	return total, seen
}

// WaitFor polls ok until it holds, failing t after d.
func WaitFor(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
