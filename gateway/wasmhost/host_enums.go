package wasmhost

// The largest enum values proxy-wasm-cpp-host accepts (exports.cc checks
// them first and answers BadArgument beyond): WasmHeaderMapType::MAX
// (HTTP call response trailers), WasmBufferType::MAX (CallData),
// LogLevel::Max (critical).
const (
	maxMapType    = uint32(mapHTTPCallTrailers)
	maxBufferType = 8
	maxLogLevel   = uint32(LogCritical)
)

// enumArg0 answers BadArgument when the hostcall's first argument (a map
// type, buffer type or log level) is beyond max, as cpp-host does, before
// fn runs.
func enumArg0(max uint32, fn func(*instance, []uint64) status) func(*instance, []uint64) status {
	return func(in *instance, args []uint64) status {
		if arg(args, 0) > max {
			return statusBadArgument
		}
		return fn(in, args)
	}
}
