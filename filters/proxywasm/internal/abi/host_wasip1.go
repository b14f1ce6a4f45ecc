//go:build wasip1

package abi

import (
	"runtime"
	"unsafe"
)

// wasmHost implements Host with the //go:wasmimport hostcalls.
//
// Inputs are passed as addresses of Go memory; runtime.KeepAlive keeps each
// input reachable until the hostcall returns (a re-entrant allocation may run
// the GC in the middle of a hostcall). Outputs are written by the host into
// buffers it obtained from proxy_on_memory_allocate; take() hands that very
// buffer back, without a copy.
type wasmHost struct{}

var _ Host = wasmHost{}

func bptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

func sptr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

func addr32(p *uint32) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }
func addr64(p *uint64) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

// retSlots zeroes the pointer/size return slots and returns their addresses.
func retSlots() (uint32, uint32) {
	module.slotPtr, module.slotSize = 0, 0
	return addr32(&module.slotPtr), addr32(&module.slotSize)
}

// take returns the size bytes the host wrote at ptr. When ptr is in a
// buffer from Allocate (the normal case) the bytes are returned in place,
// without a copy (State.Taken); otherwise they are copied out of linear
// memory.
func take(ptr, size uint32) []byte {
	if size == 0 {
		return nil
	}
	if b := module.Taken(uintptr(ptr), int(size)); b != nil {
		return b
	}
	// Linear memory starts at address 0: the address is an offset from nil.
	src := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(ptr))), size)
	return append([]byte(nil), src...)
}

func (wasmHost) Log(level LogLevel, msg string) Status {
	st := proxyLog(uint32(level), sptr(msg), uint32(len(msg)))
	runtime.KeepAlive(msg)
	return Status(st)
}

func (wasmHost) GetLogLevel() (LogLevel, Status) {
	module.slotAux = 0
	st := proxyGetLogLevel(addr32(&module.slotAux))
	return LogLevel(module.slotAux), Status(st)
}

func (wasmHost) GetCurrentTimeNanoseconds() (uint64, Status) {
	module.slotU64 = 0
	st := proxyGetCurrentTimeNanoseconds(addr64(&module.slotU64))
	return module.slotU64, Status(st)
}

func (wasmHost) SetTickPeriodMilliseconds(ms uint32) Status {
	return Status(proxySetTickPeriodMilliseconds(ms))
}

func (wasmHost) SetEffectiveContext(contextID uint32) Status {
	return Status(proxySetEffectiveContext(contextID))
}

func (wasmHost) Done() Status { return Status(proxyDone()) }

func (wasmHost) GetProperty(path []byte) ([]byte, Status) {
	rp, rn := retSlots()
	st := Status(proxyGetProperty(bptr(path), uint32(len(path)), rp, rn))
	runtime.KeepAlive(path)
	if st != StatusOK {
		return nil, st
	}
	return take(module.slotPtr, module.slotSize), st
}

func (wasmHost) SetProperty(path, value []byte) Status {
	st := proxySetProperty(bptr(path), uint32(len(path)), bptr(value), uint32(len(value)))
	runtime.KeepAlive(path)
	runtime.KeepAlive(value)
	return Status(st)
}

func (wasmHost) GetBufferBytes(bt BufferType, start, maxSize int) ([]byte, Status) {
	rp, rn := retSlots()
	st := Status(proxyGetBufferBytes(uint32(bt), uint32(start), uint32(maxSize), rp, rn))
	if st != StatusOK {
		return nil, st
	}
	return take(module.slotPtr, module.slotSize), st
}

func (wasmHost) GetBufferStatus(bt BufferType) (int, Status) {
	rp, rn := retSlots()
	st := Status(proxyGetBufferStatus(uint32(bt), rn, rp))
	return int(module.slotSize), st
}

func (wasmHost) SetBufferBytes(bt BufferType, start, size int, value []byte) Status {
	st := proxySetBufferBytes(uint32(bt), uint32(start), uint32(size), bptr(value), uint32(len(value)))
	runtime.KeepAlive(value)
	return Status(st)
}

func (wasmHost) GetHeaderMapValue(mt MapType, key string) (string, Status) {
	rp, rn := retSlots()
	st := Status(proxyGetHeaderMapValue(uint32(mt), sptr(key), uint32(len(key)), rp, rn))
	runtime.KeepAlive(key)
	if st != StatusOK {
		return "", st
	}
	b := take(module.slotPtr, module.slotSize)
	if len(b) == 0 {
		return "", st
	}
	// The buffer is ours alone (fresh from Allocate or copied): no copy needed.
	return unsafe.String(unsafe.SliceData(b), len(b)), st
}

func (wasmHost) GetHeaderMapPairs(mt MapType) ([]byte, Status) {
	rp, rn := retSlots()
	st := Status(proxyGetHeaderMapPairs(uint32(mt), rp, rn))
	if st != StatusOK {
		return nil, st
	}
	return take(module.slotPtr, module.slotSize), st
}

func (wasmHost) SetHeaderMapPairs(mt MapType, serialized []byte) Status {
	st := proxySetHeaderMapPairs(uint32(mt), bptr(serialized), uint32(len(serialized)))
	runtime.KeepAlive(serialized)
	return Status(st)
}

func (wasmHost) AddHeaderMapValue(mt MapType, key, value string) Status {
	st := proxyAddHeaderMapValue(uint32(mt), sptr(key), uint32(len(key)), sptr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return Status(st)
}

func (wasmHost) ReplaceHeaderMapValue(mt MapType, key, value string) Status {
	st := proxyReplaceHeaderMapValue(uint32(mt), sptr(key), uint32(len(key)), sptr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return Status(st)
}

func (wasmHost) RemoveHeaderMapValue(mt MapType, key string) Status {
	st := proxyRemoveHeaderMapValue(uint32(mt), sptr(key), uint32(len(key)))
	runtime.KeepAlive(key)
	return Status(st)
}

func (wasmHost) GetHeaderMapSize(mt MapType) (int, Status) {
	module.slotAux = 0
	st := proxyGetHeaderMapSize(uint32(mt), addr32(&module.slotAux))
	return int(module.slotAux), Status(st)
}

func (wasmHost) SendLocalResponse(statusCode uint32, details string, body, headers []byte, grpcStatus int32) Status {
	st := proxySendLocalResponse(statusCode, sptr(details), uint32(len(details)),
		bptr(body), uint32(len(body)), bptr(headers), uint32(len(headers)), grpcStatus)
	runtime.KeepAlive(details)
	runtime.KeepAlive(body)
	runtime.KeepAlive(headers)
	return Status(st)
}

func (wasmHost) ContinueStream(s StreamType) Status { return Status(proxyContinueStream(uint32(s))) }

func (wasmHost) CloseStream(s StreamType) Status { return Status(proxyCloseStream(uint32(s))) }

func (wasmHost) HTTPCall(upstream string, headers, body, trailers []byte, timeoutMs uint32) (uint32, Status) {
	module.slotAux = 0
	st := proxyHTTPCall(sptr(upstream), uint32(len(upstream)), bptr(headers), uint32(len(headers)),
		bptr(body), uint32(len(body)), bptr(trailers), uint32(len(trailers)), timeoutMs, addr32(&module.slotAux))
	runtime.KeepAlive(upstream)
	runtime.KeepAlive(headers)
	runtime.KeepAlive(body)
	runtime.KeepAlive(trailers)
	return module.slotAux, Status(st)
}

func (wasmHost) GetSharedData(key string) ([]byte, uint32, Status) {
	rp, rn := retSlots()
	module.slotAux = 0
	st := Status(proxyGetSharedData(sptr(key), uint32(len(key)), rp, rn, addr32(&module.slotAux)))
	runtime.KeepAlive(key)
	if st != StatusOK {
		return nil, 0, st
	}
	return take(module.slotPtr, module.slotSize), module.slotAux, st
}

func (wasmHost) SetSharedData(key string, value []byte, cas uint32) Status {
	st := proxySetSharedData(sptr(key), uint32(len(key)), bptr(value), uint32(len(value)), cas)
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return Status(st)
}

func (wasmHost) RegisterSharedQueue(name string) (uint32, Status) {
	module.slotAux = 0
	st := proxyRegisterSharedQueue(sptr(name), uint32(len(name)), addr32(&module.slotAux))
	runtime.KeepAlive(name)
	return module.slotAux, Status(st)
}

func (wasmHost) ResolveSharedQueue(vmID, name string) (uint32, Status) {
	module.slotAux = 0
	st := proxyResolveSharedQueue(sptr(vmID), uint32(len(vmID)), sptr(name), uint32(len(name)), addr32(&module.slotAux))
	runtime.KeepAlive(vmID)
	runtime.KeepAlive(name)
	return module.slotAux, Status(st)
}

func (wasmHost) EnqueueSharedQueue(queueID uint32, value []byte) Status {
	st := proxyEnqueueSharedQueue(queueID, bptr(value), uint32(len(value)))
	runtime.KeepAlive(value)
	return Status(st)
}

func (wasmHost) DequeueSharedQueue(queueID uint32) ([]byte, Status) {
	rp, rn := retSlots()
	st := Status(proxyDequeueSharedQueue(queueID, rp, rn))
	if st != StatusOK {
		return nil, st
	}
	return take(module.slotPtr, module.slotSize), st
}

func (wasmHost) DefineMetric(mt MetricType, name string) (uint32, Status) {
	module.slotAux = 0
	st := proxyDefineMetric(uint32(mt), sptr(name), uint32(len(name)), addr32(&module.slotAux))
	runtime.KeepAlive(name)
	return module.slotAux, Status(st)
}

func (wasmHost) IncrementMetric(metricID uint32, delta int64) Status {
	return Status(proxyIncrementMetric(metricID, delta))
}

func (wasmHost) RecordMetric(metricID uint32, value uint64) Status {
	return Status(proxyRecordMetric(metricID, value))
}

func (wasmHost) GetMetric(metricID uint32) (uint64, Status) {
	module.slotU64 = 0
	st := proxyGetMetric(metricID, addr64(&module.slotU64))
	return module.slotU64, Status(st)
}

func (wasmHost) CallForeignFunction(name string, args []byte) ([]byte, Status) {
	rp, rn := retSlots()
	st := Status(proxyCallForeignFunction(sptr(name), uint32(len(name)), bptr(args), uint32(len(args)), rp, rn))
	runtime.KeepAlive(name)
	runtime.KeepAlive(args)
	if st != StatusOK {
		return nil, st
	}
	return take(module.slotPtr, module.slotSize), st
}
