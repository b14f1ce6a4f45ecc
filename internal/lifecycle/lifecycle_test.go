package lifecycle

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

type fake struct {
	errc     chan error
	closeErr error
	closed   int
}

func (f *fake) Err() <-chan error { return f.errc }
func (f *fake) Close() error      { f.closed++; return f.closeErr }

func TestServe(t *testing.T) {
	failure, closeFailure := errors.New("server failed"), errors.New("close failed")
	for _, tc := range []struct {
		name           string
		fail, closeErr error
		cancel         bool
		want           error
	}{
		{name: "ctx ends", cancel: true},
		{name: "ctx ends, close fails", cancel: true, closeErr: closeFailure, want: closeFailure},
		{name: "server fails", fail: failure, want: failure},
		{name: "server and close fail: the first failure wins", fail: failure, closeErr: closeFailure, want: failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fake{errc: make(chan error, 1), closeErr: tc.closeErr}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			if tc.fail != nil {
				f.errc <- tc.fail
			}
			if err := Serve(ctx, f); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Serve: %v, want %v", err, tc.want)
			}
			if f.closed != 1 {
				t.Fatalf("Close called %d times, want 1", f.closed)
			}
		})
	}
}

func TestRunStartFails(t *testing.T) {
	refused := errors.New("refused")
	err := Run(context.Background(), func(context.Context) (*fake, error) { return nil, refused })
	if !errors.Is(err, refused) {
		t.Fatalf("Run: %v, want the start error", err)
	}
	f := &fake{errc: make(chan error, 1)}
	f.errc <- refused
	if err := Run(context.Background(), func(context.Context) (*fake, error) { return f, nil }); !errors.Is(err, refused) || f.closed != 1 {
		t.Fatalf("Run: %v with %d closes, want the failure and one Close", err, f.closed)
	}
}

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var calls atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Millisecond, func() {
			if calls.Add(1) == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after ctx ended")
	}
	n := calls.Load()
	if n < 3 {
		t.Fatalf("fn called %d times before Every returned, want at least 3", n)
	}
	time.Sleep(20 * time.Millisecond)
	if m := calls.Load(); m != n {
		t.Fatalf("fn called %d more times after Every returned", m-n)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(t.Context(), time.Millisecond) {
		t.Fatal("Sleep on a live ctx reported it ended")
	}
	if !Sleep(t.Context(), 0) {
		t.Fatal("Sleep(0) on a live ctx reported it ended")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended ctx reported it alive")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Sleep on an ended ctx waited %s", d)
	}
	if Sleep(ctx, 0) {
		t.Fatal("Sleep(0) on an ended ctx reported it alive")
	}
}
