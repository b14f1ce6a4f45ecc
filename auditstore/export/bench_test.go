package export

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// BenchmarkExportBacklog measures how fast the exporter drains a WAL backlog
// into JetStream (in-process nats-server, file storage). One op is one
// record.
//
//	go test -run '^$' -bench BenchmarkExportBacklog -benchtime 100000x ./auditstore/export/
func BenchmarkExportBacklog(b *testing.B) {
	for _, full := range []bool{true, false} {
		b.Run(fmt.Sprintf("fullDecode=%v", full), func(b *testing.B) { benchExport(b, full) })
	}
}

func benchExport(b *testing.B, full bool) {
	ns := natstest.Start(b)
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
	x, err := New(Config{Dir: dir, URL: ns.URL(), Batch: 1024, fullDecode: full})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- x.Run(ctx) }()
	for x.Exported() < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
}
