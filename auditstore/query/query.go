// Package query reads an audit WAL directory: filtered scans (audit query)
// and following the tail (audit tail -f). It reads segment files directly, so
// it works on a live collector's directory and on a copy.
package query

import (
	"context"
	"io"
	"math"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Filter selects records; zero fields match everything.
type Filter struct {
	From, To time.Time // on Event.Timestamp; From inclusive, To exclusive
	OpType   string    // any case
	Subject  string
	TraceID  string
	Tag      string // a compliance tag the record carries (pci, region=eu)
}

// Match reports whether e passes f.
func (f Filter) Match(e *auditevent.Event) bool {
	switch {
	case !f.From.IsZero() && e.Timestamp < f.From.UnixNano():
		return false
	case !f.To.IsZero() && e.Timestamp >= f.To.UnixNano():
		return false
	case f.OpType != "" && !strings.EqualFold(e.OpType, f.OpType):
		return false
	case f.Subject != "" && e.Subject != f.Subject:
		return false
	case f.TraceID != "" && e.TraceID != f.TraceID:
		return false
	case f.Tag != "" && !hasTag(e, f.Tag):
		return false
	}
	return true
}

func hasTag(e *auditevent.Event, tag string) bool {
	for _, t := range e.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// Scan calls fn for every record in dir matching f, in sequence order, and
// returns the number matched. A corrupt record stops the scan with an error
// (run audit verify to locate it).
func Scan(ctx context.Context, dir string, f Filter, fn func(e *auditevent.Event, raw []byte) error) (int, error) {
	fl, err := wal.NewFollower(dir, 1)
	if err != nil {
		return 0, err
	}
	defer fl.Close()
	n := 0
	for i := 0; ; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return n, ctx.Err()
		}
		rec, e, err := fl.Next(math.MaxUint64)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if !f.Match(&e) {
			continue
		}
		n++
		if err := fn(&e, rec.Payload); err != nil {
			return n, err
		}
	}
}

// Tail calls fn for the last n records matching f, then, if follow is set,
// for every new matching record until ctx ends, polling every interval.
func Tail(ctx context.Context, dir string, f Filter, n int, follow bool, interval time.Duration, fn func(e *auditevent.Event, raw []byte) error) error {
	type item struct {
		e   auditevent.Event
		raw []byte
	}
	ring := make([]item, 0, n)
	fl, err := wal.NewFollower(dir, 1)
	if err != nil {
		return err
	}
	defer fl.Close()
	for {
		rec, e, err := fl.Next(math.MaxUint64)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if n <= 0 || !f.Match(&e) {
			continue
		}
		if len(ring) == n {
			copy(ring, ring[1:])
			ring = ring[:n-1]
		}
		ring = append(ring, item{e, append([]byte(nil), rec.Payload...)})
	}
	for i := range ring {
		if err := fn(&ring[i].e, ring[i].raw); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rec, e, err := fl.Next(math.MaxUint64)
		if err == io.EOF {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			continue
		}
		if err != nil {
			return err
		}
		if f.Match(&e) {
			if err := fn(&e, rec.Payload); err != nil {
				return err
			}
		}
	}
}
