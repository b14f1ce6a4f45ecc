// Package loadgen drives the audit store's benchmarks: closed-loop senders
// that each run an operation until the work is drained, with the latency of
// every operation kept, and the figures reported the same way everywhere
// (events/s, p50 and p99 ack, process CPU per event).
package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Result is what one load run measured.
type Result struct {
	// Elapsed is the wall time the senders ran.
	Elapsed time.Duration
	// Lat holds every operation's latency, sorted.
	Lat []time.Duration
	// CPU is the user + system CPU time the whole process (load generator
	// included) used while the senders ran.
	CPU time.Duration
}

// ProcessCPU returns the user + system CPU time this process has used.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Closed runs n operations from senders goroutines. newWorker is called
// once per goroutine (for per-sender buffers) and returns the operation,
// given the operation's index in 0..n-1. A failing operation stops its
// sender and fails b. The timer runs only while the senders do.
func Closed(b *testing.B, senders, n int, newWorker func() func(i int) error) Result {
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	ops := make([]func(int) error, senders)
	for i := range ops {
		ops[i] = newWorker()
	}
	b.ResetTimer()
	cpu0 := ProcessCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for _, op := range ops {
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
	cpu := ProcessCPU() - cpu0
	b.StopTimer()
	slices.Sort(lat)
	return Result{Elapsed: el, Lat: lat, CPU: cpu}
}

// Report reports durable events/s, the p99 and p50 ack latency, and the
// process CPU time per event in microseconds (load generator included, so
// on a shared machine it is the figure least disturbed by other work).
func Report(b *testing.B, events uint64, r Result) {
	if len(r.Lat) == 0 {
		b.Fatal("no operation completed")
	}
	b.ReportMetric(float64(events)/r.Elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(r.Lat[len(r.Lat)*99/100].Microseconds())/1000, "p99-ack-ms")
	b.ReportMetric(float64(r.Lat[len(r.Lat)/2].Microseconds())/1000, "p50-ack-ms")
	if events > 0 && r.CPU > 0 {
		b.ReportMetric(float64(r.CPU.Nanoseconds())/1000/float64(events), "cpu-us/event")
	}
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
