package wasmhost

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestOpenStreamsShareInstances: an open stream (a request waiting for a
// slow upstream, or a client sending its body slowly) does not hold an
// instance to itself. Many more streams than PoolSize are open at once on
// a pool of one and two instances, interleaving their callbacks as Envoy
// interleaves the streams of one VM; each keeps its own context.
func TestOpenStreamsShareInstances(t *testing.T) {
	for _, pool := range []int{1, 2} {
		r := newRuntime(t, RuntimeConfig{})
		p := newPlugin(t, r, "headers", PluginConfig{PoolSize: pool})
		const open = 24
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		streams := make([]*Stream, open)
		for i := range streams {
			s, err := p.NewStream(ctx, StreamInfo{})
			if err != nil {
				t.Fatalf("pool %d: stream %d of %d open at once: %v", pool, i+1, open, err)
			}
			streams[i] = s
		}
		cancel()
		for i, s := range streams {
			h := reqHeaders("x-mw-dye", string(rune('a'+i)))
			if res := s.OnRequestHeaders(h, true); res.Action != Continue || res.Err != nil {
				t.Fatalf("pool %d, stream %d: %v %v", pool, i, res.Action, res.Err)
			}
			if v, _ := h.Get("x-mw-lane"); v != string(rune('a'+i)) {
				t.Errorf("pool %d, stream %d: x-mw-lane %q, want %q", pool, i, v, string(rune('a'+i)))
			}
		}
		for i := len(streams) - 1; i >= 0; i-- {
			rh := NewHeaders(":status", "200")
			if res := streams[i].OnResponseHeaders(rh, true); res.Action != Continue {
				t.Fatalf("pool %d, stream %d response: %v %v", pool, i, res.Action, res.Err)
			}
			if _, ok := rh.Get("x-mw-filtered"); !ok {
				t.Errorf("pool %d, stream %d: response not filtered", pool, i)
			}
			streams[i].Close()
		}
		if n := p.Stats().Instances; n < 1 || n > int64(pool) {
			t.Errorf("pool %d: %d instances", pool, n)
		}
	}
}

// TestSharedInstancesConcurrent runs streams from many goroutines through a
// pool smaller than their number, each stream held open across a pause, as
// the gateway holds it across the upstream round trip (run with -race).
func TestSharedInstancesConcurrent(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "headers", PluginConfig{PoolSize: 2})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				s, err := p.NewStream(context.Background(), StreamInfo{})
				if err != nil {
					errs <- err.Error()
					return
				}
				lane := string(rune('a'+g)) + string(rune('a'+i))
				h := reqHeaders("x-mw-dye", lane)
				s.OnRequestHeaders(h, true)
				time.Sleep(time.Millisecond) // the upstream
				if v, _ := h.Get("x-mw-lane"); v != lane {
					errs <- "lane " + v + " want " + lane
				}
				s.OnResponseHeaders(NewHeaders(":status", "200"), true)
				s.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
