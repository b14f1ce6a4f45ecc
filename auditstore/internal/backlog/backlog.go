// Package backlog drives the exporters' backlog benchmarks (JetStream and
// Kafka) the same way: a WAL of b.N records written before the timer
// starts, then the time an exporter takes to drain it, in records/s. Only
// benchmarks import it.
package backlog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Write appends b.N records to a new WAL in dir, 1000 per batch, and closes it.
func Write(b *testing.B, dir string) {
	b.Helper()
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
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// Drain runs an exporter (run) until exported reaches b.N, at most 5
// minutes, and reports records/s over the drain alone.
func Drain(b *testing.B, run func(context.Context) error, exported func() uint64) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- run(ctx) }()
	deadline := start.Add(5 * time.Minute)
	for exported() < uint64(b.N) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			b.Fatalf("exported %d of %d within 5 minutes", exported(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
}
