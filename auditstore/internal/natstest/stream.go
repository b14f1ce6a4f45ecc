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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, closeConn, err := openStream(ctx, url, nats.Timeout(time.Second))
	if err != nil {
		return -1
	}
	defer closeConn()
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return -1
	}
	return int(info.State.Subjects[subject])
}

// WantEachSeqOnce fails t unless subject of the audit stream holds exactly
// n messages, one for each Mw-Audit-Seq from 1 to n.
func WantEachSeqOnce(t testing.TB, url, subject string, n uint64) {
	t.Helper()
	total, seen := StreamSeqs(t, url, subject)
	if uint64(total) != n || uint64(len(seen)) != n {
		t.Fatalf("the stream holds %d messages, %d distinct seqs; want %d and %d", total, len(seen), n, n)
	}
	for s := uint64(1); s <= n; s++ {
		if seen[s] != 1 {
			t.Fatalf("seq %d delivered %d times downstream, want once", s, seen[s])
		}
	}
}

// StreamSeqs reads every message on subject of the audit stream and
// returns how many the stream holds and how often each Mw-Audit-Seq value
// was seen.
func StreamSeqs(t testing.TB, url, subject string) (int, map[uint64]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, closeConn, err := openStream(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
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

// openStream connects to the server at url and opens the audit stream;
// closeConn closes the connection.
func openStream(ctx context.Context, url string, opts ...nats.Option) (_ jetstream.Stream, closeConn func(), _ error) {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	s, err := js.Stream(ctx, Stream)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return s, nc.Close, nil
}
