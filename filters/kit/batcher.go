package kit

import (
	"slices"
	"strconv"
	"unsafe"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

// Batcher collects encoded items in a bounded buffer in the root context
// and sends them in batches with dispatch_http_call, one batch in flight at a
// time: a batch leaves as soon as it is full (the HTTP context that fills it
// dispatches it on behalf of the plugin, DispatchPluginHttpCall), else at
// the next tick, and a full batch answered 200 is followed at once by the
// next. A failed batch goes back to the front of the buffer and is retried
// on the next tick; items past the bound are dropped and counted.
//
// By default the buffer is per instance: HTTP contexts append to it directly
// (they share the instance's memory with the root context). With a queue name
// configured, HTTP contexts enqueue to that proxy-wasm shared queue instead,
// and the root drains it on ticks, so one buffer serves several instances —
// at the price of a host notification per item (docs/bench/filters.md).
//
// A Batcher lives in a plugin context: Start it in OnPluginStart, Add from
// HTTP contexts, and call Tick and QueueReady from the plugin's OnTick and
// OnQueueReady.
type Batcher struct {
	filter   string // names the filter in log lines, e.g. "audit"
	items    string // names the items in log lines, e.g. "records"
	queued   bool   // items go through the shared queue queueID
	queueID  uint32
	notified int // queue notifications since the last drain
	max      int
	batch    int
	cluster  string
	headers  [][2]string
	timeout  uint32
	// encode appends the batch body of items to dst.
	encode func(dst []byte, items [][]byte) []byte

	// data holds the encoded items, back to back, and ends[i] is the end
	// of item i in data: the first inflight of them are the batch in
	// flight, the others wait. Items are encoded in place at the end of
	// data (ItemBuf), so the per-request path allocates nothing in the
	// steady state. An acknowledged batch leaves data; a failed one stays
	// in front and is retried.
	data     []byte
	ends     []int
	inflight int
	// backoff is set when the last batch failed: until the next tick
	// retries it, a full buffer does not send at once (a collector that is
	// down is not called, and logged, on every request).
	backoff bool
	// scratch is the buffer items are encoded into before the shared
	// queue copies them (queued mode).
	scratch []byte
	// list is the scratch list of a batch's items; body is the scratch
	// buffer batch bodies are encoded into (the host copies it in
	// DispatchHttpCall, so one buffer serves every batch).
	list [][]byte
	body []byte

	enqueued, sent, dropped, failures proxywasm.MetricCounter
	vm                                *proxywasm.VM
}

// BatcherConfig configures a Batcher.
type BatcherConfig struct {
	// VM is the VM of the plugin context the batcher serves.
	VM *proxywasm.VM
	// Filter names the filter in log lines ("audit"); Items names what it
	// sends ("records").
	Filter, Items string
	// QueueName, when set, is the proxy-wasm shared queue the items go
	// through (the configuration's batch.queueName).
	QueueName string
	// Buffer bounds the items waiting; Batch is the most sent at once.
	Buffer, Batch int
	// Cluster, Headers and TimeoutMs make each batch's dispatch_http_call.
	Cluster   string
	Headers   [][2]string
	TimeoutMs int
	// Encode appends the batch body of items to dst.
	Encode func(dst []byte, items [][]byte) []byte
	// The names of the counters of items enqueued, sent and dropped, and of
	// failed batches.
	Enqueued, Sent, Dropped, Failures string
}

// Start registers the shared queue (when one is named) and defines the
// counters. A queue that cannot be registered is logged as a refusal to
// start and Start returns false: the plugin must fail its start.
func (b *Batcher) Start(c BatcherConfig) bool {
	var qid uint32
	if c.QueueName != "" {
		var err error
		if qid, err = c.VM.RegisterSharedQueue(c.QueueName); err != nil {
			c.VM.LogCriticalf("%s: refusing to start: cannot register shared queue %q (batch.queueName): %v", c.Filter, c.QueueName, err)
			return false
		}
	}
	*b = Batcher{
		filter: c.Filter, items: c.Items,
		queued: c.QueueName != "", queueID: qid, max: c.Buffer, batch: c.Batch,
		cluster: c.Cluster, headers: c.Headers, timeout: uint32(c.TimeoutMs),
		encode: c.Encode, vm: c.VM,
		enqueued: c.VM.DefineCounterMetric(c.Enqueued),
		sent:     c.VM.DefineCounterMetric(c.Sent),
		dropped:  c.VM.DefineCounterMetric(c.Dropped),
		failures: c.VM.DefineCounterMetric(c.Failures),
	}
	return true
}

// Tick drains the shared queue (if any) and sends a batch: the plugin's
// OnTick.
func (b *Batcher) Tick() {
	b.backoff = false
	b.drain()
	b.flush()
}

// QueueReady is the plugin's OnQueueReady: the host calls it after every
// enqueue. Draining one item per notification would add a dequeue (a
// hostcall and a guest allocation) to every request, so the queue is drained
// here only once a full batch may be waiting, and otherwise on the tick.
func (b *Batcher) QueueReady() {
	b.notified++
	if b.notified < b.batch {
		return
	}
	b.drain()
	if len(b.ends)-b.inflight >= b.batch {
		b.flush()
	}
}

// itemCap is the room ItemBuf leaves: one encoded item fits.
const itemCap = 768

// ItemBuf returns an empty buffer to encode one item into and pass to Add:
// the free end of the batcher's own buffer (or, in queued mode, a scratch
// buffer the queue copies from), so the per-request path allocates nothing
// in the steady state.
func (b *Batcher) ItemBuf() []byte {
	if b.queued {
		b.scratch = slices.Grow(b.scratch[:0], itemCap)
		return b.scratch
	}
	b.data = slices.Grow(b.data, itemCap)
	return b.data[len(b.data):len(b.data)]
}

// Add takes one encoded item from an HTTP context.
func (b *Batcher) Add(data []byte) {
	if b.queued {
		err := b.vm.EnqueueSharedQueue(b.queueID, data)
		b.scratch = data[:0] // the host copied it
		if err != nil {
			b.dropped.Increment(1)
			return
		}
	} else {
		if len(b.ends) >= b.max {
			b.dropped.Increment(1)
			return
		}
		b.push(data)
	}
	b.enqueued.Increment(1)
	if !b.queued && !b.backoff && len(b.ends) >= b.batch {
		// A full batch leaves now, not at the next tick: between ticks the
		// buffer would fill at high request rates (and drop records), and
		// every acknowledged batch moves the whole backlog to the front.
		b.flush()
	}
}

// push appends an item to data: in place when it was encoded at the end of
// data (ItemBuf) and still lies there, else as a copy.
func (b *Batcher) push(item []byte) {
	n := len(b.data)
	if len(item) > 0 && cap(b.data)-n >= len(item) && unsafe.SliceData(item) == unsafe.SliceData(b.data[n:]) {
		b.data = b.data[:n+len(item)]
	} else {
		b.data = append(b.data, item...)
	}
	b.ends = append(b.ends, len(b.data))
}

// drain moves every queued item into the buffer.
func (b *Batcher) drain() {
	b.notified = 0
	if !b.queued {
		return
	}
	for {
		data, err := b.vm.DequeueSharedQueue(b.queueID)
		if err != nil || data == nil {
			return
		}
		if len(b.ends) >= b.max {
			b.dropped.Increment(1)
			continue
		}
		b.push(data)
	}
}

// flush sends one batch if none is in flight.
func (b *Batcher) flush() {
	if b.inflight > 0 || len(b.ends) == 0 {
		return
	}
	n := min(b.batch, len(b.ends))
	b.list = b.list[:0]
	start := 0
	for _, end := range b.ends[:n] {
		b.list = append(b.list, b.data[start:end])
		start = end
	}
	b.body = b.encode(b.body[:0], b.list)
	clear(b.list)
	_, err := b.vm.DispatchPluginHttpCall(b.cluster, b.headers, b.body, nil, b.timeout, func(_, _, _ int) {
		b.inflight = 0
		st := CallStatus(b.vm)
		if st == 200 {
			b.sent.Increment(uint64(n))
			b.remove(0, n)
			if len(b.ends) >= b.batch {
				b.flush()
			}
			return
		}
		b.vm.LogWarnf("%s: collector answered %d to a batch of %d %s; retrying on the next tick", b.filter, st, n, b.items)
		b.failures.Increment(1)
		b.backoff = true
		b.requeue(n)
	})
	if err != nil {
		b.vm.LogWarnf("%s: cannot send a batch to cluster %q: %v; retrying on the next tick", b.filter, b.cluster, err)
		b.failures.Increment(1)
		b.backoff = true
		b.requeue(n)
		return
	}
	b.inflight = n
}

// requeue keeps the first n items, a batch that was not sent, in front of
// the others, dropping those of them that exceed the bound.
func (b *Batcher) requeue(n int) {
	room := max(b.max-(len(b.ends)-n), 0)
	if room < n {
		b.dropped.Increment(uint64(n - room))
		b.remove(room, n)
	}
}

// remove removes items i to j-1.
func (b *Batcher) remove(i, j int) {
	if i >= j {
		return
	}
	from, to := 0, b.ends[j-1]
	if i > 0 {
		from = b.ends[i-1]
	}
	b.data = append(b.data[:from], b.data[to:]...)
	cut := to - from
	b.ends = append(b.ends[:i], b.ends[j:]...)
	for k := i; k < len(b.ends); k++ {
		b.ends[k] -= cut
	}
}

// CallStatus returns the :status of the current http call response, or 0.
func CallStatus(vm *proxywasm.VM) int {
	hs, err := vm.GetHttpCallResponseHeaders()
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
