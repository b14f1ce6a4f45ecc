package wasmhost

import (
	"fmt"

	"github.com/meshwarden/meshwarden/filters/proxywasm/nullvm"
)

// hostcallFn is the Go implementation of one hostcall (hostFunc.fn).
type hostcallFn = func(in *instance, args []uint64) status

// hostcallTable holds the hostFuncs a native instance calls, resolved by
// name once per Runtime from hostFuncs: the very functions wasm guests reach
// through the "env" module.
type hostcallTable struct {
	log, getLogLevel, getCurrentTime, setTickPeriod, setEffectiveContext, done hostcallFn
	getProperty, setProperty                                                   hostcallFn
	getBufferBytes, getBufferStatus, setBufferBytes                            hostcallFn
	getHeaderMapValue, getHeaderMapPairs, setHeaderMapPairs                    hostcallFn
	addHeaderMapValue, replaceHeaderMapValue, removeHeaderMapValue             hostcallFn
	getHeaderMapSize                                                           hostcallFn
	sendLocalResponse, continueStream, closeStream, httpCall                   hostcallFn
	getSharedData, setSharedData                                               hostcallFn
	registerQueue, resolveQueue, enqueue, dequeue                              hostcallFn
	defineMetric, incrementMetric, recordMetric, getMetric                     hostcallFn
	callForeignFunction                                                        hostcallFn
}

func newHostcallTable() (*hostcallTable, error) {
	byName := map[string]hostcallFn{}
	for _, area := range hostFuncs {
		for _, f := range area {
			byName[f.name] = f.fn
		}
	}
	t := &hostcallTable{}
	for name, dst := range map[string]*hostcallFn{
		"proxy_log": &t.log, "proxy_get_log_level": &t.getLogLevel,
		"proxy_get_current_time_nanoseconds": &t.getCurrentTime, "proxy_set_tick_period_milliseconds": &t.setTickPeriod,
		"proxy_set_effective_context": &t.setEffectiveContext, "proxy_done": &t.done,
		"proxy_get_property": &t.getProperty, "proxy_set_property": &t.setProperty,
		"proxy_get_buffer_bytes": &t.getBufferBytes, "proxy_get_buffer_status": &t.getBufferStatus,
		"proxy_set_buffer_bytes":     &t.setBufferBytes,
		"proxy_get_header_map_value": &t.getHeaderMapValue, "proxy_get_header_map_pairs": &t.getHeaderMapPairs,
		"proxy_set_header_map_pairs": &t.setHeaderMapPairs, "proxy_add_header_map_value": &t.addHeaderMapValue,
		"proxy_replace_header_map_value": &t.replaceHeaderMapValue, "proxy_remove_header_map_value": &t.removeHeaderMapValue,
		"proxy_get_header_map_size": &t.getHeaderMapSize,
		"proxy_send_local_response": &t.sendLocalResponse, "proxy_continue_stream": &t.continueStream,
		"proxy_close_stream": &t.closeStream, "proxy_http_call": &t.httpCall,
		"proxy_get_shared_data": &t.getSharedData, "proxy_set_shared_data": &t.setSharedData,
		"proxy_register_shared_queue": &t.registerQueue, "proxy_resolve_shared_queue": &t.resolveQueue,
		"proxy_enqueue_shared_queue": &t.enqueue, "proxy_dequeue_shared_queue": &t.dequeue,
		"proxy_define_metric": &t.defineMetric, "proxy_increment_metric": &t.incrementMetric,
		"proxy_record_metric": &t.recordMetric, "proxy_get_metric": &t.getMetric,
		"proxy_call_foreign_function": &t.callForeignFunction,
	} {
		fn := byName[name]
		if fn == nil {
			return nil, fmt.Errorf("native host: no hostcall %s in the host module", name)
		}
		*dst = fn
	}
	return t, nil
}

// nativeHost is the nullvm.Host of one native instance: each hostcall lays
// its arguments out in the scratch memory as a wasm guest lays them out in
// linear memory, calls the hostFunc, and copies the answer out (returned
// slices belong to the filter).
type nativeHost struct {
	in    *instance
	mem   *nativeMemory
	calls *hostcallTable
	args  [10]uint64
}

var _ nullvm.Host = (*nativeHost)(nil)

type st = nullvm.Status

// call runs fn with args, passed in h.args (args itself does not escape,
// so a hostcall allocates nothing for them).
func (h *nativeHost) call(fn hostcallFn, args ...uint64) st {
	n := copy(h.args[:], args)
	return st(fn(h.in, h.args[:n]))
}

// outSlots reserves n u32/u64 out-slots (8 bytes each) and returns the first.
func (h *nativeHost) outSlots(n int) uint32 { return h.mem.alloc(8 * n) }

// callOutBytes runs fn with args plus a (ptr, size) out-pair and copies out
// the bytes the hostcall wrote there; nil unless the status is OK.
func (h *nativeHost) callOutBytes(fn hostcallFn, args ...uint64) ([]byte, st) {
	o := h.outSlots(2)
	n := copy(h.args[:len(h.args)-2], args)
	h.args[n], h.args[n+1] = uint64(o), uint64(o+8)
	s := st(fn(h.in, h.args[:n+2]))
	if s != nullvm.StatusOK {
		return nil, s
	}
	return h.takeBytes(o), s
}

// takeBytes copies out the (ptr, size) pair a hostcall wrote at slot.
func (h *nativeHost) takeBytes(slot uint32) []byte {
	p, n := h.mem.u32(slot), h.mem.u32(slot+8)
	if n == 0 {
		return nil
	}
	b, ok := h.mem.Read(p, n)
	if !ok {
		return nil
	}
	return append([]byte(nil), b...)
}

func (h *nativeHost) takeString(slot uint32) string {
	p, n := h.mem.u32(slot), h.mem.u32(slot+8)
	if n == 0 {
		return ""
	}
	b, ok := h.mem.Read(p, n)
	if !ok {
		return ""
	}
	return string(b)
}

func (h *nativeHost) Log(level nullvm.LogLevel, msg string) st {
	h.mem.reset()
	p, n := h.mem.putString(msg)
	return h.call(h.calls.log, uint64(level), p, n)
}

func (h *nativeHost) GetLogLevel() (nullvm.LogLevel, st) {
	h.mem.reset()
	o := h.outSlots(1)
	s := h.call(h.calls.getLogLevel, uint64(o))
	return nullvm.LogLevel(h.mem.u32(o)), s
}

func (h *nativeHost) GetCurrentTimeNanoseconds() (uint64, st) {
	h.mem.reset()
	o := h.outSlots(1)
	s := h.call(h.calls.getCurrentTime, uint64(o))
	return h.mem.u64(o), s
}

func (h *nativeHost) SetTickPeriodMilliseconds(ms uint32) st {
	return h.call(h.calls.setTickPeriod, uint64(ms))
}

func (h *nativeHost) SetEffectiveContext(id uint32) st {
	return h.call(h.calls.setEffectiveContext, uint64(id))
}

func (h *nativeHost) Done() st { return h.call(h.calls.done) }

func (h *nativeHost) GetProperty(path []byte) ([]byte, st) {
	h.mem.reset()
	p, n := h.mem.putBytes(path)
	return h.callOutBytes(h.calls.getProperty, p, n)
}

func (h *nativeHost) SetProperty(path, value []byte) st {
	h.mem.reset()
	p, n := h.mem.putBytes(path)
	vp, vn := h.mem.putBytes(value)
	return h.call(h.calls.setProperty, p, n, vp, vn)
}

func (h *nativeHost) GetBufferBytes(bt nullvm.BufferType, start, maxSize int) ([]byte, st) {
	h.mem.reset()
	return h.callOutBytes(h.calls.getBufferBytes, uint64(bt), uint64(uint32(start)), uint64(uint32(maxSize)))
}

func (h *nativeHost) GetBufferStatus(bt nullvm.BufferType) (int, st) {
	h.mem.reset()
	o := h.outSlots(2)
	s := h.call(h.calls.getBufferStatus, uint64(bt), uint64(o), uint64(o+8))
	return int(h.mem.u32(o)), s
}

func (h *nativeHost) SetBufferBytes(bt nullvm.BufferType, start, size int, value []byte) st {
	h.mem.reset()
	p, n := h.mem.putBytes(value)
	return h.call(h.calls.setBufferBytes, uint64(bt), uint64(uint32(start)), uint64(uint32(size)), p, n)
}

func (h *nativeHost) GetHeaderMapValue(mt nullvm.MapType, key string) (string, st) {
	h.mem.reset()
	kp, kn := h.mem.putString(key)
	o := h.outSlots(2)
	s := h.call(h.calls.getHeaderMapValue, uint64(mt), kp, kn, uint64(o), uint64(o+8))
	if s != nullvm.StatusOK {
		return "", s
	}
	return h.takeString(o), s
}

func (h *nativeHost) GetHeaderMapPairs(mt nullvm.MapType) ([]byte, st) {
	h.mem.reset()
	return h.callOutBytes(h.calls.getHeaderMapPairs, uint64(mt))
}

func (h *nativeHost) SetHeaderMapPairs(mt nullvm.MapType, serialized []byte) st {
	h.mem.reset()
	p, n := h.mem.putBytes(serialized)
	return h.call(h.calls.setHeaderMapPairs, uint64(mt), p, n)
}

func (h *nativeHost) AddHeaderMapValue(mt nullvm.MapType, key, value string) st {
	h.mem.reset()
	kp, kn := h.mem.putString(key)
	vp, vn := h.mem.putString(value)
	return h.call(h.calls.addHeaderMapValue, uint64(mt), kp, kn, vp, vn)
}

func (h *nativeHost) ReplaceHeaderMapValue(mt nullvm.MapType, key, value string) st {
	h.mem.reset()
	kp, kn := h.mem.putString(key)
	vp, vn := h.mem.putString(value)
	return h.call(h.calls.replaceHeaderMapValue, uint64(mt), kp, kn, vp, vn)
}

func (h *nativeHost) RemoveHeaderMapValue(mt nullvm.MapType, key string) st {
	h.mem.reset()
	kp, kn := h.mem.putString(key)
	return h.call(h.calls.removeHeaderMapValue, uint64(mt), kp, kn)
}

func (h *nativeHost) GetHeaderMapSize(mt nullvm.MapType) (int, st) {
	h.mem.reset()
	o := h.outSlots(1)
	s := h.call(h.calls.getHeaderMapSize, uint64(mt), uint64(o))
	return int(h.mem.u32(o)), s
}

func (h *nativeHost) SendLocalResponse(code uint32, details string, body, headers []byte, grpcStatus int32) st {
	h.mem.reset()
	dp, dn := h.mem.putString(details)
	bp, bn := h.mem.putBytes(body)
	hp, hn := h.mem.putBytes(headers)
	return h.call(h.calls.sendLocalResponse, uint64(code), dp, dn, bp, bn, hp, hn, uint64(uint32(grpcStatus)))
}

func (h *nativeHost) ContinueStream(t nullvm.StreamType) st {
	return h.call(h.calls.continueStream, uint64(t))
}

func (h *nativeHost) CloseStream(t nullvm.StreamType) st {
	return h.call(h.calls.closeStream, uint64(t))
}

func (h *nativeHost) HTTPCall(upstream string, headers, body, trailers []byte, timeoutMs uint32) (uint32, st) {
	h.mem.reset()
	up, un := h.mem.putString(upstream)
	hp, hn := h.mem.putBytes(headers)
	bp, bn := h.mem.putBytes(body)
	tp, tn := h.mem.putBytes(trailers)
	o := h.outSlots(1)
	s := h.call(h.calls.httpCall, up, un, hp, hn, bp, bn, tp, tn, uint64(timeoutMs), uint64(o))
	return h.mem.u32(o), s
}

func (h *nativeHost) GetSharedData(key string) ([]byte, uint32, st) {
	h.mem.reset()
	kp, kn := h.mem.putString(key)
	o := h.outSlots(3)
	s := h.call(h.calls.getSharedData, kp, kn, uint64(o), uint64(o+8), uint64(o+16))
	if s != nullvm.StatusOK {
		return nil, 0, s
	}
	return h.takeBytes(o), h.mem.u32(o + 16), s
}

func (h *nativeHost) SetSharedData(key string, value []byte, cas uint32) st {
	h.mem.reset()
	kp, kn := h.mem.putString(key)
	vp, vn := h.mem.putBytes(value)
	return h.call(h.calls.setSharedData, kp, kn, vp, vn, uint64(cas))
}

func (h *nativeHost) RegisterSharedQueue(name string) (uint32, st) {
	h.mem.reset()
	np, nn := h.mem.putString(name)
	o := h.outSlots(1)
	s := h.call(h.calls.registerQueue, np, nn, uint64(o))
	return h.mem.u32(o), s
}

func (h *nativeHost) ResolveSharedQueue(vmID, name string) (uint32, st) {
	h.mem.reset()
	vp, vn := h.mem.putString(vmID)
	np, nn := h.mem.putString(name)
	o := h.outSlots(1)
	s := h.call(h.calls.resolveQueue, vp, vn, np, nn, uint64(o))
	return h.mem.u32(o), s
}

func (h *nativeHost) EnqueueSharedQueue(id uint32, value []byte) st {
	h.mem.reset()
	vp, vn := h.mem.putBytes(value)
	return h.call(h.calls.enqueue, uint64(id), vp, vn)
}

func (h *nativeHost) DequeueSharedQueue(id uint32) ([]byte, st) {
	h.mem.reset()
	return h.callOutBytes(h.calls.dequeue, uint64(id))
}

func (h *nativeHost) DefineMetric(mt nullvm.MetricType, name string) (uint32, st) {
	h.mem.reset()
	np, nn := h.mem.putString(name)
	o := h.outSlots(1)
	s := h.call(h.calls.defineMetric, uint64(mt), np, nn, uint64(o))
	return h.mem.u32(o), s
}

func (h *nativeHost) IncrementMetric(id uint32, delta int64) st {
	return h.call(h.calls.incrementMetric, uint64(id), uint64(delta))
}

func (h *nativeHost) RecordMetric(id uint32, value uint64) st {
	return h.call(h.calls.recordMetric, uint64(id), value)
}

func (h *nativeHost) GetMetric(id uint32) (uint64, st) {
	h.mem.reset()
	o := h.outSlots(1)
	s := h.call(h.calls.getMetric, uint64(id), uint64(o))
	return h.mem.u64(o), s
}

func (h *nativeHost) CallForeignFunction(name string, args []byte) ([]byte, st) {
	h.mem.reset()
	np, nn := h.mem.putString(name)
	ap, an := h.mem.putBytes(args)
	return h.callOutBytes(h.calls.callForeignFunction, np, nn, ap, an)
}
