package wal

import (
	"math"
	"testing"
)

// TestFollowBounds: without a WAL to ask, an exporter reads everything on
// disk and polls; with one, it reads up to what is durable and wakes on
// the WAL's channel.
func TestFollowBounds(t *testing.T) {
	if limit, wake := FollowBounds(nil, nil); limit != math.MaxUint64 || wake != nil {
		t.Fatalf("nil, nil: limit %d, wake %v: want MaxUint64 and no channel", limit, wake)
	}
	ch := make(chan struct{})
	limit, wake := FollowBounds(func() uint64 { return 42 }, func() <-chan struct{} { return ch })
	if limit != 42 || wake != (<-chan struct{})(ch) {
		t.Fatalf("limit %d, wake %v: want 42 and the WAL's channel", limit, wake)
	}
}
