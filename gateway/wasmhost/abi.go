package wasmhost

// Values of the proxy-wasm ABI (0.2.0 and 0.2.1) as the host sees them. They
// follow proxy-wasm/spec abi-versions/v0.2.1 and Envoy's proxy-wasm-cpp-host.

// status is a proxy_result_t, returned by every hostcall.
type status = uint32

const (
	statusOK                  status = 0
	statusNotFound            status = 1
	statusBadArgument         status = 2
	statusSerializationFailed status = 3
	statusParseFailure        status = 4
	statusInvalidMemoryAccess status = 6
	statusEmpty               status = 7
	statusCasMismatch         status = 8
	statusInternalFailure     status = 10
	statusUnimplemented       status = 12
)

// mapType is a proxy_map_type_t.
type mapType uint32

const (
	mapRequestHeaders       mapType = 0
	mapRequestTrailers      mapType = 1
	mapResponseHeaders      mapType = 2
	mapResponseTrailers     mapType = 3
	mapGRPCInitialMetadata  mapType = 4
	mapGRPCTrailingMetadata mapType = 5
	mapHTTPCallHeaders      mapType = 6
	mapHTTPCallTrailers     mapType = 7
)

// bufferType is a proxy_buffer_type_t.
type bufferType uint32

const (
	bufferRequestBody      bufferType = 0
	bufferResponseBody     bufferType = 1
	bufferDownstreamData   bufferType = 2
	bufferUpstreamData     bufferType = 3
	bufferHTTPCallResponse bufferType = 4
	bufferGRPCReceive      bufferType = 5
	bufferVMConfiguration  bufferType = 6
	bufferPluginConfig     bufferType = 7
	bufferCallData         bufferType = 8
)

// streamType is a proxy_stream_type_t (proxy_continue_stream, proxy_close_stream).
type streamType uint32

const (
	streamRequest  streamType = 0
	streamResponse streamType = 1
)

// metricType is the kind of a guest-defined metric (proxy_metric_type_t).
type metricType uint32

const (
	// metricCounter is a monotonically increasing metric.
	metricCounter metricType = 0
	// metricGauge is a metric that can go up and down.
	metricGauge metricType = 1
	// metricHistogram records a distribution of values.
	metricHistogram metricType = 2
)

// actionContinue is the proxy_action_t that lets the stream go on; every other
// value pauses it (StopIteration for headers, StopIterationAndBuffer for bodies).
const actionContinue = 0

// LogLevel is a proxy_log_level_t.
type LogLevel uint32

// Log levels of the ABI, lowest first.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

// ABIVersion identifies which proxy-wasm ABI a module implements.
type ABIVersion string

// The ABI versions the host runs.
const (
	ABI020 ABIVersion = "0.2.0"
	ABI021 ABIVersion = "0.2.1"
)
