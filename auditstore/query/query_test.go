package query

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

func TestScanFilters(t *testing.T) {
	dir := t.TempDir()
	w, err := wal.Open(context.Background(), wal.Options{Dir: dir, SegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	var evs []auditevent.Event
	for i := range 30 {
		op := "READ"
		if i%3 == 0 {
			op = "FUND_TRANSFER"
		}
		evs = append(evs, auditevent.Event{ID: fmt.Sprintf("t%02d-1-intent", i), Phase: auditevent.PhaseIntent, OpType: op,
			Subject: fmt.Sprintf("spiffe://dc1/ns/default/svc/s%d", i%2), TraceID: fmt.Sprintf("t%02d", i),
			Timestamp: base.Add(time.Duration(i) * time.Minute).UnixNano()})
	}
	if _, err := w.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, tc := range []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 30},
		{"op type", Filter{OpType: "FUND_TRANSFER"}, 10},
		{"subject", Filter{Subject: "spiffe://dc1/ns/default/svc/s1"}, 15},
		{"trace id", Filter{TraceID: "t07"}, 1},
		{"from inclusive", Filter{From: base.Add(20 * time.Minute)}, 10},
		{"to exclusive", Filter{To: base.Add(20 * time.Minute)}, 20},
		{"window and op", Filter{From: base.Add(3 * time.Minute), To: base.Add(9 * time.Minute), OpType: "FUND_TRANSFER"}, 2},
		{"nothing", Filter{OpType: "NOPE"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last uint64
			n, err := Scan(context.Background(), dir, tc.f, func(e *auditevent.Event, _ []byte) error {
				if e.Seq <= last {
					t.Fatalf("out of order: %d after %d", e.Seq, last)
				}
				last = e.Seq
				return nil
			})
			if err != nil || n != tc.want {
				t.Fatalf("matched %d (%v), want %d", n, err, tc.want)
			}
		})
	}
	var got []string
	if err := Tail(context.Background(), dir, Filter{OpType: "READ"}, 3, false, 0, func(e *auditevent.Event, _ []byte) error {
		got = append(got, e.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[t26-1-intent t28-1-intent t29-1-intent]" {
		t.Fatalf("tail -n 3 --op-type READ = %v", got)
	}
}
