//go:build wasip1

// Package guestabi is a minimal, raw proxy-wasm guest layer for the host's
// test guests: direct //go:wasmimport hostcalls with uint32 pointers (so the
// hostile guests can pass any address) and a pinning allocator. The real
// guest ABI package is filters/proxywasm; this one exists so the host can be
// tested against hand-written guests, including broken ones.
package guestabi

import (
	"encoding/binary"
	"unsafe"
)

// Status values of the ABI.
const (
	OK                  = 0
	NotFound            = 1
	BadArgument         = 2
	InvalidMemoryAccess = 6
	Empty               = 7
	CasMismatch         = 8
	InternalFailure     = 10
	Unimplemented       = 12
)

// Map and buffer types.
const (
	RequestHeaders   = 0
	RequestTrailers  = 1
	ResponseHeaders  = 2
	ResponseTrailers = 3
	CallHeaders      = 6
	CallTrailers     = 7

	RequestBody  = 0
	ResponseBody = 1
	CallBody     = 4
	VMConfig     = 6
	PluginConfig = 7
)

// pinned keeps every buffer handed to the host alive until the current
// callback returns (Unpin): the host writes into it after the allocator
// returned, and Go's GC would otherwise be free to reclaim it.
var pinned [][]byte

// Return slots live in global memory, never on the goroutine stack: the host
// calls the allocator in the middle of a hostcall, which may grow (move) the
// stack, and the host would then write through a stale address.
var (
	slotP, slotN, slotCas, slotU32 uint32
	slotU64                        uint64
)

func addr32(p *uint32) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

// BadAlloc makes Alloc return an address outside memory (hostile tests).
var BadAlloc bool

// Alloc is the body of proxy_on_memory_allocate / malloc.
func Alloc(size uint32) uint32 {
	if BadAlloc {
		return 0xFFFFFFF0
	}
	if size == 0 {
		size = 1
	}
	b := make([]byte, size)
	pinned = append(pinned, b)
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

// Unpin releases the buffers of the previous callback; call it first in every
// exported callback.
func Unpin() {
	clear(pinned)
	pinned = pinned[:0]
}

// Ptr returns the address of b's first byte (0 for empty b).
func Ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

// SPtr returns the address of s's first byte.
func SPtr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

func load(p, n uint32) []byte {
	if n == 0 || p == 0 {
		return nil
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n)...)
}

//go:wasmimport env proxy_log
func ProxyLog(level, p, n uint32) uint32

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(ret uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTime(ret uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func SetTickPeriod(ms uint32) uint32

//go:wasmimport env proxy_get_property
func ProxyGetProperty(p, n, retP, retN uint32) uint32

//go:wasmimport env proxy_set_property
func proxySetProperty(p, n, vp, vn uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func ProxyGetBufferBytes(t, start, max, retP, retN uint32) uint32

//go:wasmimport env proxy_get_buffer_status
func proxyGetBufferStatus(t, retLen, retFlags uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func ProxySetBufferBytes(t, start, size, p, n uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func ProxyGetHeaderMapPairs(t, retP, retN uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func ProxySetHeaderMapPairs(t, p, n uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func ProxyGetHeaderMapValue(t, kp, kn, retP, retN uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func ProxyAddHeaderMapValue(t, kp, kn, vp, vn uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(t, kp, kn, vp, vn uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(t, kp, kn uint32) uint32

//go:wasmimport env proxy_get_header_map_size
func proxyGetHeaderMapSize(t, ret uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(code, dp, dn, bp, bn, hp, hn uint32, grpc int32) uint32

//go:wasmimport env proxy_continue_stream
func ContinueStream(t uint32) uint32

//go:wasmimport env proxy_close_stream
func CloseStream(t uint32) uint32

//go:wasmimport env proxy_http_call
func ProxyHTTPCall(up, un, hp, hn, bp, bn, tp, tn, timeout, retToken uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(kp, kn, retP, retN, retCas uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(kp, kn, vp, vn, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(np, nn, ret uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxyResolveSharedQueue(vp, vn, np, nn, ret uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(id, p, n uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(id, retP, retN uint32) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(t, np, nn, ret uint32) uint32

//go:wasmimport env proxy_increment_metric
func IncrementMetric(id uint32, delta int64) uint32

//go:wasmimport env proxy_record_metric
func RecordMetric(id uint32, v uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(id, ret uint32) uint32

//go:wasmimport env proxy_set_effective_context
func SetEffectiveContext(id uint32) uint32

//go:wasmimport env proxy_done
func Done() uint32

//go:wasmimport env proxy_clear_route_cache
func ClearRouteCache() uint32

//go:wasmimport env proxy_get_status
func proxyGetStatus(code, retP, retN uint32) uint32

// Status returns the host's last gRPC status (the gateway has no gRPC calls).
func Status() (uint32, []byte, uint32) {
	b, st := ret2(func(rp, rn uint32) uint32 { return proxyGetStatus(addr32(&slotCas), rp, rn) })
	return slotCas, b, st
}

//go:wasmimport env proxy_call_foreign_function
func proxyCallForeign(np, nn, ap, an, retP, retN uint32) uint32

// Log writes msg at level.
func Log(level uint32, msg string) uint32 { return ProxyLog(level, SPtr(msg), uint32(len(msg))) }

// LogLevel returns the host's log level.
func LogLevel() (uint32, uint32) {
	st := proxyGetLogLevel(addr32(&slotU32))
	return slotU32, st
}

// Now returns the host's wall clock.
func Now() (uint64, uint32) {
	st := proxyGetCurrentTime(uint32(uintptr(unsafe.Pointer(&slotU64))))
	return slotU64, st
}

func ret2(f func(rp, rn uint32) uint32) ([]byte, uint32) {
	slotP, slotN = 0, 0
	st := f(addr32(&slotP), addr32(&slotN))
	if st != OK {
		return nil, st
	}
	return load(slotP, slotN), st
}

// Property reads a property; path segments are joined with NUL.
func Property(path ...string) ([]byte, uint32) {
	b := []byte{}
	for i, s := range path {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, s...)
	}
	return ret2(func(rp, rn uint32) uint32 { return ProxyGetProperty(Ptr(b), uint32(len(b)), rp, rn) })
}

// SetProperty sets a property.
func SetProperty(path, value string) uint32 {
	return proxySetProperty(SPtr(path), uint32(len(path)), SPtr(value), uint32(len(value)))
}

// Buffer reads size bytes from start of buffer t.
func Buffer(t, start, size uint32) ([]byte, uint32) {
	return ret2(func(rp, rn uint32) uint32 { return ProxyGetBufferBytes(t, start, size, rp, rn) })
}

// BufferLen returns the length of buffer t.
func BufferLen(t uint32) (uint32, uint32) {
	st := proxyGetBufferStatus(t, addr32(&slotN), addr32(&slotP))
	return slotN, st
}

// SetBuffer writes data at start replacing size bytes (Envoy semantics).
func SetBuffer(t, start, size uint32, data string) uint32 {
	return ProxySetBufferBytes(t, start, size, SPtr(data), uint32(len(data)))
}

// Header returns the first value of key in map t.
func Header(t uint32, key string) (string, uint32) {
	b, st := ret2(func(rp, rn uint32) uint32 {
		return ProxyGetHeaderMapValue(t, SPtr(key), uint32(len(key)), rp, rn)
	})
	return string(b), st
}

// Pairs returns every pair of map t.
func Pairs(t uint32) ([][2]string, uint32) {
	b, st := ret2(func(rp, rn uint32) uint32 { return ProxyGetHeaderMapPairs(t, rp, rn) })
	if st != OK {
		return nil, st
	}
	return DecodePairs(b), OK
}

// SetPairs replaces map t.
func SetPairs(t uint32, pairs [][2]string) uint32 {
	b := EncodePairs(pairs)
	return ProxySetHeaderMapPairs(t, Ptr(b), uint32(len(b)))
}

// AddHeader appends a pair to map t.
func AddHeader(t uint32, k, v string) uint32 {
	return ProxyAddHeaderMapValue(t, SPtr(k), uint32(len(k)), SPtr(v), uint32(len(v)))
}

// ReplaceHeader sets k in map t.
func ReplaceHeader(t uint32, k, v string) uint32 {
	return proxyReplaceHeaderMapValue(t, SPtr(k), uint32(len(k)), SPtr(v), uint32(len(v)))
}

// RemoveHeader removes k from map t.
func RemoveHeader(t uint32, k string) uint32 {
	return proxyRemoveHeaderMapValue(t, SPtr(k), uint32(len(k)))
}

// MapSize returns the serialized size of map t.
func MapSize(t uint32) (uint32, uint32) {
	st := proxyGetHeaderMapSize(t, addr32(&slotU32))
	return slotU32, st
}

// SendLocalResponse replies locally.
func SendLocalResponse(code uint32, details, body string, headers [][2]string, grpc int32) uint32 {
	h := EncodePairs(headers)
	return proxySendLocalResponse(code, SPtr(details), uint32(len(details)), SPtr(body), uint32(len(body)), Ptr(h), uint32(len(h)), grpc)
}

// HTTPCall dispatches an HTTP call.
func HTTPCall(cluster string, headers [][2]string, body string, timeoutMS uint32) (uint32, uint32) {
	h := EncodePairs(headers)
	st := ProxyHTTPCall(SPtr(cluster), uint32(len(cluster)), Ptr(h), uint32(len(h)), SPtr(body), uint32(len(body)), 0, 0, timeoutMS, addr32(&slotU32))
	return slotU32, st
}

// SharedData reads key.
func SharedData(key string) ([]byte, uint32, uint32) {
	b, st := ret2(func(rp, rn uint32) uint32 {
		return proxyGetSharedData(SPtr(key), uint32(len(key)), rp, rn, addr32(&slotCas))
	})
	return b, slotCas, st
}

// SetSharedData writes key with cas (0: unconditional).
func SetSharedData(key, value string, cas uint32) uint32 {
	return proxySetSharedData(SPtr(key), uint32(len(key)), SPtr(value), uint32(len(value)), cas)
}

// RegisterQueue registers a shared queue.
func RegisterQueue(name string) (uint32, uint32) {
	st := proxyRegisterSharedQueue(SPtr(name), uint32(len(name)), addr32(&slotU32))
	return slotU32, st
}

// ResolveQueue finds a queue of vm.
func ResolveQueue(vm, name string) (uint32, uint32) {
	st := proxyResolveSharedQueue(SPtr(vm), uint32(len(vm)), SPtr(name), uint32(len(name)), addr32(&slotU32))
	return slotU32, st
}

// Enqueue appends to a queue.
func Enqueue(id uint32, v string) uint32 { return proxyEnqueueSharedQueue(id, SPtr(v), uint32(len(v))) }

// Dequeue pops from a queue.
func Dequeue(id uint32) ([]byte, uint32) {
	return ret2(func(rp, rn uint32) uint32 { return proxyDequeueSharedQueue(id, rp, rn) })
}

// DefineMetric defines a metric of type t.
func DefineMetric(t uint32, name string) (uint32, uint32) {
	st := proxyDefineMetric(t, SPtr(name), uint32(len(name)), addr32(&slotU32))
	return slotU32, st
}

// Metric reads a metric.
func Metric(id uint32) (uint64, uint32) {
	st := proxyGetMetric(id, uint32(uintptr(unsafe.Pointer(&slotU64))))
	return slotU64, st
}

// CallForeign calls a foreign function.
func CallForeign(name string) uint32 {
	return proxyCallForeign(SPtr(name), uint32(len(name)), 0, 0, addr32(&slotP), addr32(&slotN))
}

// EncodePairs serializes a header map.
func EncodePairs(pairs [][2]string) []byte {
	if len(pairs) == 0 {
		return nil
	}
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(pairs)))
	for _, p := range pairs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[1])))
	}
	for _, p := range pairs {
		b = append(b, p[0]...)
		b = append(b, 0)
		b = append(b, p[1]...)
		b = append(b, 0)
	}
	return b
}

// DecodePairs parses a serialized header map.
func DecodePairs(b []byte) [][2]string {
	if len(b) < 4 {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	out := make([][2]string, n)
	data := b[4+8*n:]
	for i := range n {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		out[i] = [2]string{string(data[:kl]), string(data[kl+1 : kl+1+vl])}
		data = data[kl+vl+2:]
	}
	return out
}
