package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/internal/kafkatest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// BenchmarkExportBacklog measures how fast the exporter drains a WAL backlog
// into Kafka (franz-go's in-process kfake broker, synced writes to disk —
// no real Kafka broker can be installed on these machines, so the figure
// is the exporter's own cost plus kfake's, not a production cluster's).
// One op is one record.
//
//	go test -run '^$' -bench BenchmarkExportBacklog -benchtime 100000x ./auditstore/kafka/
func BenchmarkExportBacklog(b *testing.B) {
	k := kafkatest.Start(b)
	dir := b.TempDir()
	w, err := wal.Open(context.Background(), wal.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i += 1000 {
		var evs []auditevent.Event
		for j := i; j < min(i+1000, b.N); j++ {
			evs = append(evs, auditevent.Event{ID: fmt.Sprintf("t%08d-1-intent", j), Phase: auditevent.PhaseIntent, OpType: "PAY",
				Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42", Timestamp: int64(1 + j)})
		}
		if _, err := w.Append(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	x, err := New(Config{Dir: dir, Brokers: []string{k.Addr()}, CreateTopics: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- x.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for x.Exported() < uint64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("exported %d of %d within 5 minutes", x.Exported(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
}
