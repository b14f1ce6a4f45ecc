package wasmhost

import (
	"sync"
	"time"
)

// watchdog is the one goroutine per Runtime that marks overdue calls of
// native instances. An instance is watched from before its first call until
// it is closed. A native call publishes its sequence number in
// instance.callSeq (no clock read on the call path); the watchdog scans the
// live instances every period, remembers when it first saw each running
// call, and marks (timedOut) and cancels a call it has seen running for
// longer than its timeout; the instance is discarded when the call returns
// (native code is not interrupted). A call is timed from its first
// sighting, which is never before its start, so it is never marked early,
// and at most a period after it, so it is marked within timeout + 2
// periods (1.25× the timeout).
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
	seen map[*instance]sighting // running native calls, by instance
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// sighting is a native call the watchdog saw running: its sequence number
// and when the watchdog first saw it.
type sighting struct {
	seq uint64
	at  time.Time
}

func newWatchdog() *watchdog {
	w := &watchdog{set: map[*instance]struct{}{}, seen: map[*instance]sighting{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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
	delete(w.seen, in)
	w.mu.Unlock()
}

func (w *watchdog) close() {
	close(w.stop)
	<-w.done
}

// scan returns the next period: an eighth of the shortest CallTimeout
// watched (at least 1 ms, at most 250 ms), so an overdue native call is
// marked within 1.25× its timeout; with nothing watched it is 250 ms.
func (w *watchdog) scan(now time.Time) time.Duration {
	period := 250 * time.Millisecond
	w.mu.Lock()
	defer w.mu.Unlock()
	for in := range w.set {
		timeout := in.p.cfg.CallTimeout
		period = min(period, timeout/8)
		if in.p.mod.native == nil {
			continue // wasm: deadlineCheck bounds it (or, trusted, nothing does)
		}
		seq := in.callSeq.Load()
		seen, ok := w.seen[in]
		switch {
		case seq == 0:
			delete(w.seen, in)
		case !ok || seen.seq != seq:
			w.seen[in] = sighting{seq: seq, at: now}
		case now.Sub(seen.at) > timeout && !in.timedOut.Load() && in.callSeq.Load() == seq:
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
		timer.Reset(w.scan(time.Now()))
		select {
		case <-w.stop:
			return
		case <-w.wake:
		case <-timer.C:
		}
	}
}
