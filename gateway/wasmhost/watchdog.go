package wasmhost

import (
	"sync"
	"time"
)

// watchdog is the one goroutine per Runtime that marks overdue calls of
// native instances. An instance is watched from before its first call until
// it is closed. A call marks its start in instance.callStart; the watchdog
// scans the live instances and marks (timedOut) and cancels any native call
// older than its timeout; the instance is discarded when the call returns
// (native code is not interrupted).
//
// A wasm instance's calls are bounded without it: the instrumented guest
// calls deadlineCheck every meterInterval loop headers, which reads the
// clock against callStart itself, so a call is stopped soon after its
// timeout (≈ 0.1 ms on average), whatever the scan period, and a watchdog
// descheduled on a loaded machine cannot mark a later call with a stale
// start. See docs/RATIONALE-wasmhost.md, "Deadlines".
type watchdog struct {
	mu   sync.Mutex
	set  map[*instance]struct{}
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newWatchdog() *watchdog {
	w := &watchdog{set: map[*instance]struct{}{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// watch adds in; its plugin's CallTimeout sets the scan period.
func (w *watchdog) watch(in *instance) {
	w.mu.Lock()
	w.set[in] = struct{}{}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watchdog) forget(in *instance) {
	w.mu.Lock()
	delete(w.set, in)
	w.mu.Unlock()
}

func (w *watchdog) close() {
	close(w.stop)
	<-w.done
}

// period is a quarter of the shortest CallTimeout watched (at least 1 ms,
// at most 250 ms), so an overdue native call is marked within 1.25× its
// timeout; with nothing watched it is 250 ms.
func (w *watchdog) scan() time.Duration {
	period := 250 * time.Millisecond
	w.mu.Lock()
	defer w.mu.Unlock()
	for in := range w.set {
		timeout := in.p.cfg.CallTimeout
		period = min(period, timeout/4)
		if in.p.mod.native == nil {
			continue // wasm: deadlineCheck bounds it (or, trusted, nothing does)
		}
		s := in.callStart.Load()
		if s != 0 && int64(time.Since(in.p.epoch))-s > int64(timeout) && !in.timedOut.Load() && in.callStart.Load() == s {
			in.timedOut.Store(true)
			in.cancel()
		}
	}
	return max(period, time.Millisecond)
}

func (w *watchdog) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(w.scan())
		select {
		case <-w.stop:
			return
		case <-w.wake:
		case <-timer.C:
		}
	}
}
