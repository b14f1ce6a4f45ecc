package trace

import (
	"strconv"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

// batcher collects encoded items in a bounded buffer in the root context
// and sends them in batches with dispatch_http_call, one batch in flight at a
// time; a full batch answered 200 is followed at once by the next. A failed
// batch goes back to the front of the buffer and is retried on the next
// tick; items past the bound are dropped and counted.
//
// By default the buffer is per instance: HTTP contexts append to it directly
// (they share the instance's memory with the root context). With a queue name
// configured, HTTP contexts enqueue to that proxy-wasm shared queue instead,
// and the root drains it on ticks, so one buffer serves several instances —
// at the price of a host notification per item (docs/bench/filters.md).
type batcher struct {
	queued   bool // items go through the shared queue queueID
	queueID  uint32
	notified int // queue notifications since the last drain
	buf      [][]byte
	inflight int
	max      int
	batch    int
	cluster  string
	headers  [][2]string
	timeout  uint32
	encode   func(items [][]byte) []byte

	enqueued, sent, dropped, failures proxywasm.MetricCounter
}

// add takes one encoded item from an HTTP context.
func (b *batcher) add(data []byte) {
	if b.queued {
		if err := proxywasm.EnqueueSharedQueue(b.queueID, data); err != nil {
			b.dropped.Increment(1)
			return
		}
	} else {
		if len(b.buf)+b.inflight >= b.max {
			b.dropped.Increment(1)
			return
		}
		b.buf = append(b.buf, data)
	}
	b.enqueued.Increment(1)
}

// drain moves every queued item into the buffer.
func (b *batcher) drain() {
	b.notified = 0
	if !b.queued {
		return
	}
	for {
		data, err := proxywasm.DequeueSharedQueue(b.queueID)
		if err != nil || data == nil {
			return
		}
		if len(b.buf)+b.inflight >= b.max {
			b.dropped.Increment(1)
			continue
		}
		b.buf = append(b.buf, data)
	}
}

// flush sends one batch if none is in flight.
func (b *batcher) flush() {
	if b.inflight > 0 || len(b.buf) == 0 {
		return
	}
	n := min(b.batch, len(b.buf))
	items := append([][]byte(nil), b.buf[:n]...)
	body := b.encode(items)
	b.buf = append(b.buf[:0:0], b.buf[n:]...)
	_, err := proxywasm.DispatchHttpCall(b.cluster, b.headers, body, nil, b.timeout, func(_, _, _ int) {
		b.inflight = 0
		st := callStatus()
		if st == 200 {
			b.sent.Increment(uint64(len(items)))
			if len(b.buf) >= b.batch {
				b.flush()
			}
			return
		}
		proxywasm.LogWarnf("trace: collector answered %d to a batch of %d spans; retrying on the next tick", st, len(items))
		b.failures.Increment(1)
		b.requeue(items)
	})
	if err != nil {
		proxywasm.LogWarnf("trace: cannot send a batch to cluster %q: %v; retrying on the next tick", b.cluster, err)
		b.failures.Increment(1)
		b.requeue(items)
		return
	}
	b.inflight = n
}

// requeue puts items back in front, dropping what exceeds the bound.
func (b *batcher) requeue(items [][]byte) {
	room := b.max - len(b.buf)
	if room < len(items) {
		if room < 0 {
			room = 0
		}
		b.dropped.Increment(uint64(len(items) - room))
		items = items[:room]
	}
	b.buf = append(items, b.buf...)
}

// callStatus returns the :status of the current http call response, or 0.
func callStatus() int {
	hs, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		return 0
	}
	for _, h := range hs {
		if h[0] == ":status" {
			n, _ := strconv.Atoi(h[1])
			return n
		}
	}
	return 0
}
