package wasmhost

import (
	"sync"
	"sync/atomic"
)

// sharedData is Envoy's shared data: key/value pairs with a compare-and-swap
// token, shared by every instance and plugin of one vm_id.
type sharedData struct {
	mu   sync.Mutex
	cas  uint32
	byVM map[string]map[string]sharedValue
}

type sharedValue struct {
	data []byte
	cas  uint32
}

func newSharedData() *sharedData { return &sharedData{byVM: map[string]map[string]sharedValue{}} }

func (s *sharedData) get(vm, key string) ([]byte, uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byVM[vm][key]
	return v.data, v.cas, ok
}

// set stores value under key. For a key that exists, a non-zero cas must
// match its current token; zero sets unconditionally. A new key is set
// whatever the cas, as proxy-wasm-cpp-host's SharedData::set does.
func (s *sharedData) set(vm, key string, value []byte, cas uint32) status {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byVM[vm]
	if m == nil {
		m = map[string]sharedValue{}
		s.byVM[vm] = m
	}
	if cur, ok := m[key]; ok && cas != 0 && cur.cas != cas {
		return statusCasMismatch
	}
	s.cas++
	if s.cas == 0 {
		s.cas = 1
	}
	m[key] = sharedValue{data: value, cas: s.cas}
	return statusOK
}

// sharedQueues are Envoy's shared queues. A queue is named per vm_id; the
// root contexts that registered it get proxy_on_queue_ready.
type sharedQueues struct {
	mu     sync.Mutex
	nextID uint32
	byName map[[2]string]*queue
	byID   map[uint32]*queue
}

type queue struct {
	id    uint32
	items [][]byte
	subs  []*instance
	next  int
}

func newSharedQueues() *sharedQueues {
	return &sharedQueues{byName: map[[2]string]*queue{}, byID: map[uint32]*queue{}}
}

func (q *sharedQueues) register(vm, name string, in *instance) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := [2]string{vm, name}
	qu := q.byName[k]
	if qu == nil {
		q.nextID++
		qu = &queue{id: q.nextID}
		q.byName[k] = qu
		q.byID[qu.id] = qu
	}
	live := qu.subs[:0]
	for _, s := range qu.subs {
		if !s.dead.Load() && s != in {
			live = append(live, s)
		}
	}
	qu.subs = append(live, in)
	return qu.id
}

func (q *sharedQueues) resolve(vm, name string) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.byName[[2]string{vm, name}]
	if qu == nil {
		return 0, false
	}
	return qu.id, true
}

// enqueue appends data and returns the instance to notify (nil if none).
func (q *sharedQueues) enqueue(id uint32, data []byte) (*instance, status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.byID[id]
	if qu == nil {
		return nil, statusNotFound
	}
	qu.items = append(qu.items, data)
	for range qu.subs {
		s := qu.subs[qu.next%len(qu.subs)]
		qu.next++
		if !s.dead.Load() {
			return s, statusOK
		}
	}
	return nil, statusOK
}

func (q *sharedQueues) dequeue(id uint32) ([]byte, status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.byID[id]
	if qu == nil {
		return nil, statusNotFound
	}
	if len(qu.items) == 0 {
		return nil, statusEmpty
	}
	d := qu.items[0]
	qu.items[0] = nil
	qu.items = qu.items[1:]
	return d, statusOK
}

// metricStore holds guest-defined metrics, host-wide as Envoy's stats are:
// defining a name twice returns the same id.
type metricStore struct {
	mu     sync.RWMutex
	byName map[string]uint32
	list   []*metric
}

type metric struct {
	name   string
	plugin string // the plugin that defined it first
	typ    metricType
	value  atomic.Int64
	count  atomic.Uint64
	sum    atomic.Uint64
}

func newMetricStore() *metricStore { return &metricStore{byName: map[string]uint32{}} }

func (m *metricStore) define(typ metricType, name, plugin string) (uint32, status) {
	if typ > metricHistogram || name == "" {
		return 0, statusBadArgument
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byName[name]; ok {
		if m.list[id-1].typ != typ {
			return 0, statusBadArgument
		}
		return id, statusOK
	}
	m.list = append(m.list, &metric{name: name, plugin: plugin, typ: typ})
	id := uint32(len(m.list))
	m.byName[name] = id
	return id, statusOK
}

func (m *metricStore) lookup(id uint32) *metric {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if id == 0 || int(id) > len(m.list) {
		return nil
	}
	return m.list[id-1]
}

func (m *metricStore) increment(id uint32, delta int64) status {
	mt := m.lookup(id)
	switch {
	case mt == nil:
		return statusNotFound
	case mt.typ == metricCounter && delta < 0, mt.typ == metricHistogram:
		return statusBadArgument
	}
	mt.value.Add(delta)
	return statusOK
}

func (m *metricStore) record(id uint32, v uint64) status {
	mt := m.lookup(id)
	if mt == nil {
		return statusNotFound
	}
	switch mt.typ {
	case metricCounter: // Envoy only moves a counter forward
		for {
			cur := mt.value.Load()
			if int64(v) <= cur || mt.value.CompareAndSwap(cur, int64(v)) {
				break
			}
		}
	case metricGauge:
		mt.value.Store(int64(v))
	case metricHistogram:
		mt.count.Add(1)
		mt.sum.Add(v)
	}
	return statusOK
}

func (m *metricStore) get(id uint32) (uint64, status) {
	mt := m.lookup(id)
	switch {
	case mt == nil:
		return 0, statusNotFound
	case mt.typ == metricHistogram:
		return 0, statusBadArgument
	}
	return uint64(mt.value.Load()), statusOK
}

// GuestMetric is the value of one metric a guest defined with
// proxy_define_metric. Metrics are host-wide by name, as Envoy's are: two
// plugins defining one name share it, and Plugin names the first.
type GuestMetric struct {
	Name   string
	Plugin string
	// Kind is "counter", "gauge" or "histogram".
	Kind string
	// Value is the counter or gauge value.
	Value int64
	// Count and Sum summarise a histogram (the host keeps no buckets).
	Count, Sum uint64
}

// GuestMetrics returns the current value of every metric guests defined,
// in definition order. A guest defines its metrics when it starts, so they
// are there (at zero) before the first request.
func (r *Runtime) GuestMetrics() []GuestMetric {
	r.metrics.mu.RLock()
	defer r.metrics.mu.RUnlock()
	out := make([]GuestMetric, 0, len(r.metrics.list))
	for _, mt := range r.metrics.list {
		out = append(out, GuestMetric{Name: mt.name, Plugin: mt.plugin, Kind: mt.typ.kind(),
			Value: mt.value.Load(), Count: mt.count.Load(), Sum: mt.sum.Load()})
	}
	return out
}

func (t metricType) kind() string {
	switch t {
	case metricCounter:
		return "counter"
	case metricGauge:
		return "gauge"
	}
	return "histogram"
}
