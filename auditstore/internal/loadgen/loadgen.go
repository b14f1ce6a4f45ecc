// Package loadgen drives the audit store's benchmarks: closed-loop senders
// that each run an operation until the work is drained, with the latency of
// every operation kept, and the figures reported the same way everywhere
// (events/s, p50 and p99 ack).
package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Closed runs n operations from senders goroutines. newWorker is called
// once per goroutine (for per-sender buffers) and returns the operation,
// given the operation's index in 0..n-1. A failing operation stops its
// sender and fails b. The timer runs only while the senders do. It returns
// the elapsed time and every operation's latency, sorted.
func Closed(b *testing.B, senders, n int, newWorker func() func(i int) error) (time.Duration, []time.Duration) {
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		op := newWorker()
		wg.Go(func() {
			local := make([]time.Duration, 0, n/senders+1)
			for i := range work {
				t0 := time.Now()
				if err := op(i); err != nil {
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
	return el, lat
}

// Report reports durable events/s and the p99 and p50 ack latency (lat
// sorted).
func Report(b *testing.B, events uint64, el time.Duration, lat []time.Duration) {
	if len(lat) == 0 {
		b.Fatal("no operation completed")
	}
	b.ReportMetric(float64(events)/el.Seconds(), "events/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ack-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ack-ms")
}

// Post sends one batch body to a collector's ingest URL with token and
// fails unless it is acknowledged (200).
func Post(client *http.Client, url, token string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(auditevent.TokenHeader, token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
