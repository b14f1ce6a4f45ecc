// Package lifecycle is the one shape the long-running parts of Meshwarden
// share (the control plane, the audit collector): a configuration with
// defaults, Validate, Start(ctx), and Close; Serve is the wait between Start
// and Close.
package lifecycle

import (
	"context"
	"time"
)

// Service is a started part.
type Service interface {
	// Err reports a failure while the service runs.
	Err() <-chan error
	// Close stops the service gracefully.
	Close() error
}

// Run starts a service and serves it: start, then Serve. A failed start
// returns its error and leaves nothing running (start's contract).
func Run[S Service](ctx context.Context, start func(context.Context) (S, error)) error {
	s, err := start(ctx)
	if err != nil {
		return err
	}
	return Serve(ctx, s)
}

// Serve waits until ctx ends or s fails, then closes s. It returns the
// failure, or else Close's error.
func Serve(ctx context.Context, s Service) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.Err():
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// Every calls fn every period until ctx ends, the first time one period
// after it starts. A slow fn delays the next call: ticks missed meanwhile
// are dropped, not queued (time.Ticker's rule).
func Every(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// Sleep waits d or until ctx ends, and reports whether ctx is still alive.
// A d of zero or less does not wait.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
