package wasmhost

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDeadlineCheck: the host side of the instrumentation stops a call past
// its instance's CallTimeout (marking it timed out) or whose context is
// cancelled, and otherwise re-arms the countdown. A nested call (the guest
// allocator called from a hostcall) runs under the outer call's callStart,
// so it is stopped by the outer call's deadline.
func TestDeadlineCheck(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "noop", PluginConfig{PoolSize: 1, CallTimeout: time.Second})
	check := func(ctx context.Context) (rearm uint64, stopped error) {
		defer func() {
			if v := recover(); v != nil {
				stopped = v.(error)
			}
		}()
		s := []uint64{0}
		deadlineCheck(ctx, nil, s)
		return s[0], nil
	}
	in := newInstanceState(p)
	defer in.cancel()
	now := int64(time.Since(p.epoch))
	for _, tc := range []struct {
		name      string
		callStart int64
		stop      bool
	}{
		{"idle", 0, false},
		{"fresh call", now | 1, false},
		{"overdue call (or a nested call under it)", (now - int64(2*time.Second)) | 1, true},
	} {
		in.callStart.Store(tc.callStart)
		rearm, err := check(in.ctx)
		if tc.stop != (err != nil) || (err != nil && !errors.Is(err, errCallTimeout)) || (err == nil && rearm != meterInterval) {
			t.Errorf("%s: re-arm %d, stopped %v; want stopped=%v", tc.name, rearm, err, tc.stop)
		}
		if in.timedOut.Load() != tc.stop {
			t.Errorf("%s: timedOut=%v, want %v", tc.name, in.timedOut.Load(), tc.stop)
		}
	}
	// Once marked, every later check stops it: the outer call of a stopped
	// nested call meets the check again at its next loop header.
	in.callStart.Store(int64(time.Since(p.epoch)) | 1)
	if _, err := check(in.ctx); !errors.Is(err, errCallTimeout) {
		t.Errorf("after a timeout: %v, want the call stopped", err)
	}
	// Without an instance (a start function during instantiation), only the
	// context counts.
	ctx, cancel := context.WithCancel(context.Background())
	if rearm, err := check(ctx); err != nil || rearm != meterInterval {
		t.Errorf("no instance: re-arm %d, stopped %v", rearm, err)
	}
	cancel()
	if _, err := check(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v, want the call stopped", err)
	}
}
