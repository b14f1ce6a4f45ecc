// Package abi is the wire layer of the proxy-wasm 0.2.1 guest: the enums of
// the ABI, the header-map serialization, the Host interface every hostcall
// goes through, and the dispatcher behind the proxy_on_* exports.
//
// Under GOOS=wasip1 the Host is the set of //go:wasmimport env proxy_*
// functions and the exports are //go:wasmexport functions; natively there are
// no imports or exports and a fake host (package proxytest) installs itself
// with SetHost and drives the dispatcher through the exported On* functions.
// Filter authors never import this package: they use package proxywasm.
package abi

import (
	"errors"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// Status is a proxy_status_t, returned by every hostcall.
type Status uint32

// Status values of ABI 0.2.1.
const (
	StatusOK                  Status = 0
	StatusNotFound            Status = 1
	StatusBadArgument         Status = 2
	StatusSerializationFailed Status = 3
	StatusParseFailure        Status = 4
	StatusInvalidMemoryAccess Status = 6
	StatusEmpty               Status = 7
	StatusCasMismatch         Status = 8
	StatusInternalFailure     Status = 10
	StatusUnimplemented       Status = 12
)

// Errors for the statuses that the SDK's types package has no error for.
var (
	// ErrSerializationFailed means the host could not serialize a value.
	ErrSerializationFailed = errors.New("error status returned by host: serialization failure")
	// ErrParseFailure means the host could not parse a value the guest sent.
	ErrParseFailure = errors.New("error status returned by host: parse failure")
	// ErrInvalidMemoryAccess means a pointer handed to the host was out of bounds.
	ErrInvalidMemoryAccess = errors.New("error status returned by host: invalid memory access")
)

// Err converts a status into nil (StatusOK) or an error comparable with
// errors.Is against the types.Error* values (or the Err* values above).
func (s Status) Err() error {
	switch s {
	case StatusOK:
		return nil
	case StatusNotFound:
		return types.ErrorStatusNotFound
	case StatusBadArgument:
		return types.ErrorStatusBadArgument
	case StatusSerializationFailed:
		return ErrSerializationFailed
	case StatusParseFailure:
		return ErrParseFailure
	case StatusInvalidMemoryAccess:
		return ErrInvalidMemoryAccess
	case StatusEmpty:
		return types.ErrorStatusEmpty
	case StatusCasMismatch:
		return types.ErrorStatusCasMismatch
	case StatusInternalFailure:
		return types.ErrorInternalFailure
	case StatusUnimplemented:
		return types.ErrorUnimplemented
	default:
		return guestfmt.Errorf("unknown status %d returned by host: %w", uint32(s), types.ErrorInternalFailure)
	}
}

// MapType is a proxy_map_type_t.
type MapType uint32

// Map types of ABI 0.2.1.
const (
	MapRequestHeaders       MapType = 0
	MapRequestTrailers      MapType = 1
	MapResponseHeaders      MapType = 2
	MapResponseTrailers     MapType = 3
	MapGRPCInitialMetadata  MapType = 4
	MapGRPCTrailingMetadata MapType = 5
	MapHTTPCallHeaders      MapType = 6
	MapHTTPCallTrailers     MapType = 7
)

// BufferType is a proxy_buffer_type_t.
type BufferType uint32

// Buffer types of ABI 0.2.1.
const (
	BufferRequestBody         BufferType = 0
	BufferResponseBody        BufferType = 1
	BufferDownstreamData      BufferType = 2
	BufferUpstreamData        BufferType = 3
	BufferHTTPCallBody        BufferType = 4
	BufferGRPCMessage         BufferType = 5
	BufferVMConfiguration     BufferType = 6
	BufferPluginConfiguration BufferType = 7
	BufferForeignArguments    BufferType = 8
)

// StreamType is a proxy_stream_type_t (proxy_continue_stream, proxy_close_stream).
type StreamType uint32

// Stream types of ABI 0.2.1.
const (
	StreamRequest    StreamType = 0
	StreamResponse   StreamType = 1
	StreamDownstream StreamType = 2
	StreamUpstream   StreamType = 3
)

// MetricType is a proxy_metric_type_t.
type MetricType uint32

// Metric types of ABI 0.2.1.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

// LogLevel is a proxy_log_level_t.
type LogLevel uint32

// Log levels of ABI 0.2.1, lowest first.
const (
	LogTrace    LogLevel = 0
	LogDebug    LogLevel = 1
	LogInfo     LogLevel = 2
	LogWarn     LogLevel = 3
	LogError    LogLevel = 4
	LogCritical LogLevel = 5
)

// String returns the lower-case name of the level ("info").
func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	case LogCritical:
		return "critical"
	default:
		return guestfmt.Sprintf("level(%d)", uint32(l))
	}
}

// Host is every hostcall of ABI 0.2.1 the guest uses, at the level of Go
// values. Header maps cross this interface serialized (SerializeMap), exactly
// as they cross the wasm boundary, so the serializer is exercised natively too.
// Returned byte slices belong to the caller.
type Host interface {
	Log(level LogLevel, msg string) Status
	GetLogLevel() (LogLevel, Status)
	GetCurrentTimeNanoseconds() (uint64, Status)
	SetTickPeriodMilliseconds(ms uint32) Status
	SetEffectiveContext(contextID uint32) Status
	Done() Status

	GetProperty(path []byte) ([]byte, Status)
	SetProperty(path, value []byte) Status

	GetBufferBytes(bt BufferType, start, maxSize int) ([]byte, Status)
	GetBufferStatus(bt BufferType) (size int, st Status)
	SetBufferBytes(bt BufferType, start, size int, value []byte) Status

	GetHeaderMapValue(mt MapType, key string) (string, Status)
	GetHeaderMapPairs(mt MapType) ([]byte, Status)
	SetHeaderMapPairs(mt MapType, serialized []byte) Status
	AddHeaderMapValue(mt MapType, key, value string) Status
	ReplaceHeaderMapValue(mt MapType, key, value string) Status
	RemoveHeaderMapValue(mt MapType, key string) Status
	GetHeaderMapSize(mt MapType) (int, Status)

	SendLocalResponse(statusCode uint32, details string, body, headers []byte, grpcStatus int32) Status
	ContinueStream(st StreamType) Status
	CloseStream(st StreamType) Status

	HTTPCall(upstream string, headers, body, trailers []byte, timeoutMs uint32) (uint32, Status)

	GetSharedData(key string) ([]byte, uint32, Status)
	SetSharedData(key string, value []byte, cas uint32) Status
	RegisterSharedQueue(name string) (uint32, Status)
	ResolveSharedQueue(vmID, name string) (uint32, Status)
	EnqueueSharedQueue(queueID uint32, value []byte) Status
	DequeueSharedQueue(queueID uint32) ([]byte, Status)

	DefineMetric(mt MetricType, name string) (uint32, Status)
	IncrementMetric(metricID uint32, delta int64) Status
	RecordMetric(metricID uint32, value uint64) Status
	GetMetric(metricID uint32) (uint64, Status)

	CallForeignFunction(name string, args []byte) ([]byte, Status)
}
