package wal

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// BenchmarkAppend measures durable throughput and per-batch ack latency of
// group commit with fsync, with many concurrent senders (as proxies are).
// One b.N op is one event; every event has its own id. The evidence=off
// cases turn the Merkle tree and id dedup off, to show their cost side by
// side. Run:
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 200000x ./auditstore/wal/
func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct {
		senders, batch int
		evidence       bool
	}{{64, 1, true}, {64, 16, false}, {64, 16, true}, {256, 16, true}, {64, 64, false}, {64, 64, true}} {
		b.Run(fmt.Sprintf("senders=%d/batch=%d/evidence=%v", tc.senders, tc.batch, tc.evidence), func(b *testing.B) {
			opt := Options{Dir: b.TempDir(), Signer: key(b)}
			if !tc.evidence {
				opt.DisableMerkle, opt.DedupWindow = true, -1
			}
			var ids atomic.Uint64
			w, err := Open(context.Background(), opt)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			template := make([]auditevent.Event, tc.batch)
			for i := range template {
				template[i] = ev(i)
			}
			batches := b.N/tc.batch + 1
			var mu sync.Mutex
			lat := make([]time.Duration, 0, batches)
			work := make(chan struct{}, batches)
			for range batches {
				work <- struct{}{}
			}
			close(work)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range tc.senders {
				wg.Go(func() {
					local := make([]time.Duration, 0, batches/tc.senders+1)
					evs := make([]auditevent.Event, tc.batch)
					for range work {
						copy(evs, template)
						for i := range evs {
							evs[i].ID = "e" + strconv.FormatUint(ids.Add(1), 10)
						}
						t0 := time.Now()
						if _, err := w.Append(context.Background(), evs); err != nil {
							b.Error(err)
							return
						}
						local = append(local, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			st := w.Stats()
			b.ReportMetric(float64(st.Events)/el.Seconds(), "events/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ack-ms")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ack-ms")
			b.ReportMetric(float64(st.Events)/float64(max(st.Syncs, 1)), "events/fsync")
		})
	}
}
