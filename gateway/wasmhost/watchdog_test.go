package wasmhost

import (
	"context"
	"testing"
	"time"
)

// TestWatchdogTimesNativeCallsFromFirstSighting drives scan with a chosen
// clock: a native call is marked only once the watchdog has seen the same
// call running for longer than its CallTimeout, never because an earlier
// call with another sequence number started long ago, and a call that
// ended is forgotten.
func TestWatchdogTimesNativeCallsFromFirstSighting(t *testing.T) {
	const timeout = 80 * time.Millisecond
	w := &watchdog{set: map[*instance]struct{}{}, seen: map[*instance]sighting{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := &instance{p: &Plugin{mod: &Module{native: &NativeFilter{}}, cfg: PluginConfig{CallTimeout: timeout}}, ctx: ctx, cancel: cancel}
	w.set[in] = struct{}{}
	t0 := time.Unix(1000, 0)

	if got := w.scan(t0); got != timeout/8 {
		t.Errorf("period %v, want %v (an eighth of the CallTimeout)", got, timeout/8)
	}
	in.callSeq.Store(7)
	w.scan(t0.Add(time.Millisecond)) // first sighting of call 7
	w.scan(t0.Add(time.Millisecond + timeout))
	if in.timedOut.Load() {
		t.Fatal("call 7 marked after exactly its timeout since its first sighting")
	}
	in.callSeq.Store(8) // call 7 returned, call 8 started
	w.scan(t0.Add(2 * timeout))
	if in.timedOut.Load() {
		t.Fatal("call 8 marked with call 7's sighting")
	}
	in.callSeq.Store(0)
	w.scan(t0.Add(3 * timeout))
	if _, ok := w.seen[in]; ok {
		t.Fatal("an idle instance is still remembered as running")
	}
	in.callSeq.Store(9)
	w.scan(t0.Add(4 * timeout))
	w.scan(t0.Add(5*timeout + time.Nanosecond))
	if !in.timedOut.Load() || ctx.Err() == nil {
		t.Fatalf("call 9 seen running for more than its timeout: timedOut=%v, ctx %v; want marked and cancelled", in.timedOut.Load(), ctx.Err())
	}
}

// TestLatencySample: start-up callbacks are all timed, later ones about one
// in latencySample, and every call is counted.
func TestLatencySample(t *testing.T) {
	r, mod := nativeRuntime(t)
	p := startPlugin(t, r, mod, PluginConfig{Name: "sample", PoolSize: 1})
	timed := func() (n uint64) {
		for _, c := range p.Stats().Latency.Counts {
			n += c
		}
		return n
	}
	boot := p.Stats()
	if boot.Calls == 0 || timed() != boot.Calls {
		t.Fatalf("after start-up: %d calls, %d timed; want every start-up callback timed", boot.Calls, timed())
	}
	const requests = 800
	for range requests {
		request(t, p, StreamInfo{}, reqHeaders())
	}
	calls, n := p.Stats().Calls-boot.Calls, timed()-boot.Calls
	if calls < 5*requests {
		t.Fatalf("%d calls for %d requests: every callback must be counted", calls, requests)
	}
	// Binomial(calls, 1/8): ±5 standard deviations.
	want := float64(calls) / latencySample
	if d := float64(n) - want; d*d > 25*want {
		t.Errorf("%d of %d callbacks timed, want about %.0f", n, calls, want)
	}
}
