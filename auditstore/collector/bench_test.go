package collector

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/internal/loadgen"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// BenchmarkIngestHTTP is the load run: many concurrent senders POST batches
// over loopback HTTP to a collector writing a real fsynced WAL. One b.N op is
// one event; it reports durable events/s and the p99 time from POST to Ack.
//
//	go test -run '^$' -bench BenchmarkIngestHTTP -benchtime 200000x ./auditstore/collector/
func startBench(b *testing.B) (*wal.WAL, string, func()) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	w, err := wal.Open(context.Background(), wal.Options{Dir: b.TempDir(), Signer: k})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{WAL: w, Tokens: []string{"t"}})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	return w, "http://" + ln.Addr().String() + auditevent.IngestPath, func() { cancel(); <-done; w.Close() }
}

func report(b *testing.B, w *wal.WAL, res loadgen.Result) {
	slices.Sort(res.Lat)
	st := w.Stats()
	loadgen.Report(b, st.Events, res)
	b.ReportMetric(float64(st.Events)/float64(max(st.Syncs, 1)), "events/fsync")
	b.ReportMetric(float64(st.SyncNanos)/float64(max(st.Syncs, 1))/1e6, "fsync-ms")
}

// BenchmarkIngestHTTPRate is the open-loop load run: batches are scheduled
// at a fixed rate (events/s, in batches) over 64 connections, and
// latency is measured from each batch's scheduled send time, so a slow ack
// cannot hide the requests queued behind it (no coordinated omission).
//
//	go test -run '^$' -bench BenchmarkIngestHTTPRate -benchtime 300000x ./auditstore/collector/
func BenchmarkIngestHTTPRate(b *testing.B) {
	for _, tc := range []struct{ rate, batch int }{{50_000, 20}, {100_000, 20}, {100_000, 50}} {
		rate, batch := tc.rate, tc.batch
		b.Run(fmt.Sprintf("rate=%d/batch=%d", rate, batch), func(b *testing.B) {
			const conns = 64
			w, url, stop := startBench(b)
			defer stop()
			batches := b.N/batch + 1
			bodies := benchBodies(batches, batch)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
			interval := time.Second * time.Duration(batch) / time.Duration(rate)
			type job struct {
				at time.Time
				i  int
			}
			jobs := make(chan job, batches)
			var mu sync.Mutex
			lat := make([]time.Duration, 0, batches)
			var wg sync.WaitGroup
			for range conns {
				wg.Go(func() {
					var local []time.Duration
					for j := range jobs {
						if d := time.Until(j.at); d > 0 {
							time.Sleep(d)
						}
						if err := loadgen.Post(client, url, "t", bodies[j.i]); err != nil {
							b.Error(err)
							return
						}
						local = append(local, time.Since(j.at))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				})
			}
			b.ResetTimer()
			cpu0 := loadgen.ProcessCPU()
			start := time.Now()
			for i := range batches {
				jobs <- job{start.Add(time.Duration(i) * interval), i}
			}
			close(jobs)
			wg.Wait()
			res := loadgen.Result{Elapsed: time.Since(start), Lat: lat, CPU: loadgen.ProcessCPU() - cpu0}
			b.StopTimer()
			report(b, w, res)
		})
	}
}

func BenchmarkIngestHTTP(b *testing.B) {
	for _, tc := range []struct{ senders, batch int }{{32, 1}, {8, 50}, {16, 50}, {64, 20}} {
		b.Run(fmt.Sprintf("senders=%d/batch=%d", tc.senders, tc.batch), func(b *testing.B) {
			w, url, stop := startBench(b)
			defer stop()
			batches := b.N/tc.batch + 1
			bodies := benchBodies(batches, tc.batch)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: tc.senders, MaxConnsPerHost: tc.senders}}
			res := loadgen.Closed(b, tc.senders, batches, func() func(int) error {
				return func(i int) error { return loadgen.Post(client, url, "t", bodies[i]) }
			})
			report(b, w, res)
		})
	}
}

// benchBodies returns n batch bodies of size events each, every event with
// its own id (the collector stores an id it has seen once only), shaped like
// the audit filter's intent records.
func benchBodies(n, size int) [][]byte {
	bodies := make([][]byte, n)
	for i := range n {
		bt := auditevent.Batch{Sender: "bench"}
		for j := range size {
			bt.Events = append(bt.Events, auditevent.Event{ID: fmt.Sprintf("%032x-%d-intent", i, j), Phase: auditevent.PhaseIntent,
				OpType: "FUND_TRANSFER", Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42",
				Timestamp: time.Now().UnixNano(), TraceID: fmt.Sprintf("%032x", i), Method: "POST", Path: "/v1/transfers"})
		}
		bodies[i], _ = json.Marshal(bt)
	}
	return bodies
}
