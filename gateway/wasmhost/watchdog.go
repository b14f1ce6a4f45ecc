package wasmhost

import (
	"sync"
	"time"
)

// watchdog is the one goroutine per Runtime that enforces
// PluginConfig.CallTimeout on every call into every instance: start-up
// (_initialize/_start, proxy_on_context_create, proxy_on_vm_start,
// proxy_on_configure), ticks, queue and HTTP call callbacks, and stream
// callbacks. An instance is watched from before its first call until it is
// closed, so a guest looping at start-up is stopped like one looping in a
// request. A call marks its start in instance.callStart; the watchdog scans
// the live instances and cancels the context of any call older than its
// timeout, which makes wazero close the module at its next termination
// check (see RATIONALE.md for why this is the route and what it costs).
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
// at most 250 ms), so an overdue call is stopped within 1.25× its timeout
// plus wazero's next check; with nothing watched it is 250 ms.
func (w *watchdog) scan() time.Duration {
	period := 250 * time.Millisecond
	w.mu.Lock()
	defer w.mu.Unlock()
	for in := range w.set {
		timeout := in.p.cfg.CallTimeout
		period = min(period, timeout/4)
		if !in.p.mod.deadline {
			continue // compiled without termination checks: cannot be stopped
		}
		s := in.callStart.Load()
		if s != 0 && int64(time.Since(in.p.epoch))-s > int64(timeout) && !in.timedOut.Load() {
			in.timedOut.Store(true)
			in.cancel() // wazero closes the module at its next loop/function check
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
