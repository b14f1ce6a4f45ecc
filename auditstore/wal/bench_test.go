package wal

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/meshwarden/meshwarden/auditstore/internal/loadgen"
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
			res := loadgen.Closed(b, tc.senders, b.N/tc.batch+1, func() func(int) error {
				evs := make([]auditevent.Event, tc.batch)
				return func(int) error {
					copy(evs, template)
					for i := range evs {
						evs[i].ID = "e" + strconv.FormatUint(ids.Add(1), 10)
					}
					_, err := w.Append(context.Background(), evs)
					return err
				}
			})
			st := w.Stats()
			loadgen.Report(b, st.Events, res)
			b.ReportMetric(float64(st.Events)/float64(max(st.Syncs, 1)), "events/fsync")
		})
	}
}
