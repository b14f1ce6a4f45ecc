package wasmhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHostileGuests runs guests that misbehave. In every case the host
// survives, the request is answered per the fail policy, the broken instance
// is replaced, and the next request through the same plugin works.
func TestHostileGuests(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{MemoryLimitPages: 512}) // 32 MiB
	tests := []struct {
		mode     string
		kind     string // guestError kind; "" = no failure
		body     bool   // misbehave in the body callback, after headers continued
		replaced bool   // the instance is discarded
	}{
		{mode: "oob"},
		{mode: "emptyread"},
		{mode: "badalloc"},
		{mode: "loop", kind: "timeout", replaced: true},
		{mode: "bomb", kind: "trap", replaced: true},
		{mode: "trap", kind: "trap", replaced: true},
		{mode: "trap-body", kind: "trap", body: true, replaced: true},
		{mode: "loop-body", kind: "timeout", body: true, replaced: true},
		{mode: "headers10k", kind: "limit"},
		{mode: "pairs10k", kind: "limit"},
		{mode: "reply10k", kind: "limit"},
	}
	for _, failOpen := range []bool{false, true} {
		sink := &logSink{}
		// Runaway guests meet a short deadline; the others a generous one, so
		// that a loaded machine (or -race) cannot turn their failure into a
		// timeout.
		plugins := map[bool]*Plugin{}
		for _, short := range []bool{false, true} {
			timeout := 10 * time.Second
			if short {
				timeout = 200 * time.Millisecond
			}
			plugins[short] = newPlugin(t, r, "hostile", PluginConfig{
				Logger: slog.New(sink),
				Name:   "hostile-" + strconv.FormatBool(failOpen) + "-" + strconv.FormatBool(short),
				// Non-empty, so the oob guest's read of it must write through
				// its bad pointers (an empty read writes nothing, as in Envoy).
				Configuration: []byte("{}"),
				FailOpen:      failOpen,
				PoolSize:      1, // the next request must reuse or replace the same slot
				CallTimeout:   timeout,
			})
		}
		for _, tc := range tests {
			p := plugins[tc.kind == "timeout"]
			t.Run(tc.mode+"/failOpen="+strconv.FormatBool(failOpen), func(t *testing.T) {
				before := p.Stats()
				s := openStream(t, p, StreamInfo{})
				h := reqHeaders("x-hostile", tc.mode)
				res := s.OnRequestHeaders(h, !tc.body)
				if tc.body {
					if res.Action != Continue || res.Err != nil {
						t.Fatalf("headers before the body: %v %v", res.Action, res.Err)
					}
					res = s.OnRequestBody([]byte("payload"), true)
				}
				s.Close()
				switch {
				case tc.kind == "":
					if res.Action != Continue || res.Err != nil {
						t.Fatalf("action %v err %v", res.Action, res.Err)
					}
				case res.Err == nil || !strings.Contains(res.Err.Error(), tc.kind):
					t.Fatalf("err = %v, want kind %s", res.Err, tc.kind)
				case failOpen && res.Action != Continue:
					t.Fatalf("fail-open answered %v", res.Action)
				case !failOpen && (res.Action != Reply || res.Reply.Status != 503):
					t.Fatalf("fail-closed answered %v %+v", res.Action, res.Reply)
				}
				if tc.body && failOpen && string(res.Body) != "payload" {
					t.Fatalf("fail-open body = %q, want the unfiltered body", res.Body)
				}
				switch tc.mode {
				case "bomb":
					// The guest runtime saw memory.grow fail at the limit.
					if !sink.Contains("out of memory") {
						t.Fatalf("no out-of-memory report from the guest: %v", sink.Lines())
					}
				case "oob":
					// Every bad pointer is InvalidMemoryAccess; a bad address for the
					// return of a property is too.
					if v, _ := h.Get("x-oob"); v != "6,6,6,6,6,6,6,6,6,6,6" {
						t.Fatalf("x-oob = %q", v)
					}
				case "emptyread":
					// Envoy's host: Ok, nothing written (the guest's sentinels stay).
					if v, _ := h.Get("x-emptyread"); v != "0,dead,beef" {
						t.Fatalf("x-emptyread = %q, want Ok with pointer and size untouched", v)
					}
				case "badalloc":
					if v, _ := h.Get("x-badalloc"); v != "10" {
						t.Fatalf("x-badalloc = %q, want InternalFailure", v)
					}
				}
				after := p.Stats()
				if got := after.Replaced - before.Replaced; tc.replaced != (got == 1) {
					t.Fatalf("instances replaced = %d, want replaced=%v", got, tc.replaced)
				}
				// The next request works, on a fresh or the same instance.
				next := reqHeaders("x-hostile", "oob")
				if res := request(t, p, StreamInfo{}, next); res.Action != Continue || res.Err != nil {
					t.Fatalf("next request: %v %v", res.Action, res.Err)
				}
			})
		}
		short, long := plugins[true].Stats(), plugins[false].Stats()
		if short.Timeouts != 2 || long.Timeouts != 0 || long.Traps < 3 || short.Failures+long.Failures != 8 {
			t.Fatalf("stats after hostile run: short deadline %+v, long deadline %+v", short, long)
		}
	}
}

// TestLargeHeaderMapFromGatewaySurvives hands a 10k-entry request to a
// guest that reads it whole.
func TestLargeHeaderMapFromGatewaySurvives(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "conformance", PluginConfig{PoolSize: 1, MaxHeaders: 11000, CallTimeout: 5 * time.Second})
	h := reqHeaders("x-test", "headers")
	for i := range 10000 {
		h.Add("x-big-"+strconv.Itoa(i), "v")
	}
	res := request(t, p, StreamInfo{}, h)
	if res.Action != Continue || res.Err != nil {
		t.Fatalf("%v %v", res.Action, res.Err)
	}
	if v, _ := h.Get("x-r-pairs"); v != "0/10005/10005" {
		t.Fatalf("x-r-pairs = %q", v)
	}
}

// TestConcurrentStreamsThroughPool runs many goroutines through a small pool;
// each instance serves one stream at a time (the race detector and the
// guest's own state would catch overlap).
func TestConcurrentStreamsThroughPool(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "headers", PluginConfig{PoolSize: 3})
	const workers, each = 8, 50
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				lane := "l" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				h := reqHeaders("x-mw-dye", lane)
				s, err := p.NewStream(context.Background(), StreamInfo{})
				if err != nil {
					errs <- err
					return
				}
				res := s.OnRequestHeaders(h, true)
				s.Close()
				if v, _ := h.Get("x-mw-lane"); res.Action != Continue || v != lane {
					errs <- &guestError{Plugin: "headers", Kind: "mismatch", Err: context.Canceled}
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Stats(); st.Instances > 3 || st.Instances < 1 {
		t.Fatalf("instances = %d, pool size 3", st.Instances)
	}
}

func TestWarm(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "noop", PluginConfig{PoolSize: 3})
	if err := p.warm(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	if got := p.Stats().Instances; got != 3 {
		t.Fatalf("instances = %d, want the pool size 3", got)
	}
	if res := request(t, p, StreamInfo{}, reqHeaders()); res.Action != Continue {
		t.Fatalf("%v %v", res.Action, res.Err)
	}
}

func TestClosedPluginRefusesStreams(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "noop", PluginConfig{PoolSize: 1})
	s := openStream(t, p, StreamInfo{})
	p.Close()
	if _, err := p.NewStream(context.Background(), StreamInfo{}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("NewStream on a closed plugin: %v, want a refusal", err)
	}
	// The stream open at Close keeps its instance until it is closed.
	if res := s.OnRequestHeaders(reqHeaders(), true); res.Action != Continue || res.Err != nil {
		t.Fatalf("open stream after Close: %v %v", res.Action, res.Err)
	}
	s.Close()
	if n := p.Stats().Instances; n != 0 {
		t.Fatalf("%d instances left after the last stream of a closed plugin", n)
	}
}

// TestNoCallDeadlineRuntime runs the hostile guest uninstrumented
// (NoCallDeadline): bounds checks and traps work the same, and a 1 ms
// CallTimeout is not enforced (no spurious timeouts).
func TestNoCallDeadlineRuntime(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{NoCallDeadline: true})
	p := newPlugin(t, r, "hostile", PluginConfig{PoolSize: 1, CallTimeout: time.Millisecond})
	for _, mode := range []string{"oob", "trap"} {
		h := reqHeaders("x-hostile", mode)
		res := request(t, p, StreamInfo{}, h)
		switch mode {
		case "oob":
			if res.Action != Continue || res.Err != nil {
				t.Fatalf("oob: %v %v", res.Action, res.Err)
			}
		case "trap":
			if res.Action != Reply || res.Err == nil || !strings.Contains(res.Err.Error(), "trap") {
				t.Fatalf("trap: %v %v", res.Action, res.Err)
			}
		}
	}
	if st := p.Stats(); st.Timeouts != 0 || st.Traps != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestTrapsUnderConcurrency mixes trapping and healthy requests from several
// goroutines through a small pool: every request is answered, the pool never
// exceeds its size, and it keeps serving. Streams share instances (as on an
// Envoy VM), so a trap also fails the other streams open on that instance
// at their next callback, with "instance is no longer usable" — never
// another error — and the instance is replaced once.
func TestTrapsUnderConcurrency(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "hostile", PluginConfig{PoolSize: 2, FailOpen: true})
	const workers, each = 4, 15
	type outcome struct {
		trap bool
		res  Result
	}
	out := make(chan outcome, workers*each)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				trap := (w+i)%3 == 0
				mode := "oob"
				if trap {
					mode = "trap"
				}
				s, err := p.NewStream(context.Background(), StreamInfo{})
				if err != nil {
					out <- outcome{trap, Result{Action: Reset, Err: err}}
					continue
				}
				res := s.OnRequestHeaders(reqHeaders("x-hostile", mode), true)
				s.Close()
				out <- outcome{trap, res}
				if n := p.Stats().Instances; n > 2 {
					out <- outcome{false, Result{Action: Reset, Err: &guestError{Kind: "pool", Err: context.Canceled}}}
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	close(out)
	traps, healthy, collateral := 0, 0, 0
	for o := range out {
		switch {
		case o.res.Action != Continue:
			t.Fatalf("request answered %v (%v)", o.res.Action, o.res.Err)
		case o.trap && o.res.Err == nil:
			t.Fatal("a trapping request passed without an error")
		case !o.trap && o.res.Err != nil && !errors.Is(o.res.Err, errDead):
			t.Fatalf("a healthy request failed: %v", o.res.Err)
		}
		switch {
		case o.trap:
			traps++
		case o.res.Err != nil:
			collateral++
		default:
			healthy++
		}
	}
	st := p.Stats()
	if st.Traps == 0 || st.Traps > uint64(traps) || st.Replaced != st.Traps {
		t.Fatalf("stats %+v: want 1..%d traps, each replacing its instance once", st, traps)
	}
	if healthy == 0 {
		t.Fatalf("no healthy request passed (%d collateral failures)", collateral)
	}
	t.Logf("%d trapping requests (%d traps), %d healthy passed, %d failed with a trapped instance", traps, st.Traps, healthy, collateral)
}

// TestDeadInstanceFreesItsSlot: a trap kills the only instance of a pool
// while the fail-open stream that triggered it stays open (its request goes
// on to a slow upstream). A new stream must get a fresh instance at once,
// not wait for that stream to close, and the dead instance is released.
func TestDeadInstanceFreesItsSlot(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "hostile", PluginConfig{PoolSize: 1, FailOpen: true})
	a := openStream(t, p, StreamInfo{})
	if res := a.OnRequestHeaders(reqHeaders("x-hostile", "trap"), true); res.Action != Continue || res.Err == nil {
		t.Fatalf("trapping request: %v %v, want Continue (fail open) with the trap", res.Action, res.Err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := p.NewStream(ctx, StreamInfo{})
	if err != nil {
		t.Fatalf("new stream while the dead instance's stream is still open: %v", err)
	}
	if res := b.OnRequestHeaders(reqHeaders(), true); res.Action != Continue || res.Err != nil {
		t.Fatalf("healthy request on the new instance: %v %v", res.Action, res.Err)
	}
	if st := p.Stats(); st.Instances != 1 || st.Replaced != 1 {
		t.Fatalf("stats %+v: want the dead instance replaced by one live instance", st)
	}
	a.Close() // on a discarded instance: fails quietly, discards nothing twice
	b.Close()
	if st := p.Stats(); st.Instances != 1 || st.Replaced != 1 {
		t.Fatalf("stats after closing %+v: want one live instance, one replaced", st)
	}
}

// TestAllocationBombRefused: a module of a few bytes declaring 2^32-1
// imports is refused with a reason, with and without call deadlines (and
// trusted), before wazero's decoder would size a slice by that count and
// end the process out of memory (meter.CheckBounds).
func TestAllocationBombRefused(t *testing.T) {
	bomb := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 2, 5, 0xff, 0xff, 0xff, 0xff, 0x0f}
	for _, cfg := range []RuntimeConfig{{}, {NoCallDeadline: true}, {TrustedSHA256: []string{fmt.Sprintf("%x", sha256.Sum256(bomb))}}} {
		_, err := newRuntime(t, cfg).Compile(context.Background(), bomb)
		if err == nil || !strings.Contains(err.Error(), "refused before decoding") {
			t.Fatalf("%+v: Compile = %v, want a refusal before decoding", cfg, err)
		}
	}
}

// TestCompilePanicRefused: a malformed module on which wazero's validator
// panics (index out of range; the fuzzer's find, kept as a seed of
// FuzzInstrumentAny) is refused by Compile with an error, with and without
// call deadlines, instead of ending the process.
func TestCompilePanicRefused(t *testing.T) {
	seed, err := os.ReadFile("internal/meter/testdata/fuzz/FuzzInstrumentAny/ed5da65a3135cd56")
	if err != nil {
		t.Fatal(err)
	}
	lit := strings.TrimSpace(strings.TrimPrefix(string(seed), "go test fuzz v1\n"))
	q, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "[]byte("), ")"))
	if err != nil {
		t.Fatalf("seed file: %v", err)
	}
	for _, cfg := range []RuntimeConfig{{}, {NoCallDeadline: true}} {
		_, err := newRuntime(t, cfg).Compile(context.Background(), []byte(q))
		if err == nil || !strings.Contains(err.Error(), "panic") {
			t.Fatalf("%+v: Compile = %v, want the wazero panic as an error", cfg, err)
		}
	}
}
