package wasmhost

// bufferFuncs are the buffer hostcalls: bodies, configurations and the
// HTTP call response.
var bufferFuncs = []hostFunc{
	{"proxy_get_buffer_bytes", i32s(5), enumArg0(maxBufferType, proxyGetBufferBytes)},
	{"proxy_get_buffer_status", i32s(3), enumArg0(maxBufferType, proxyGetBufferStatus)},
	{"proxy_set_buffer_bytes", i32s(5), enumArg0(maxBufferType, proxySetBufferBytes)},
}

// proxyGetBufferBytes(type, start, size, ptr_ptr, size_ptr) returns up to
// size bytes of a buffer from start.
func proxyGetBufferBytes(in *instance, args []uint64) status {
	buf, found := in.buffer(bufferType(arg(args, 0)))
	if !found {
		return statusNotFound
	}
	start, size := uint64(arg(args, 1)), uint64(arg(args, 2))
	if start > uint64(len(*buf)) {
		return statusBadArgument
	}
	end := min(start+size, uint64(len(*buf)))
	if end == start {
		// proxy-wasm-cpp-host (Envoy) answers an empty read with Ok and
		// writes neither pointer nor size: the guest keeps its own
		// initial values. Writing pointer 0 made guests of other SDKs
		// (AssemblyScript's proxy-runtime) trap on an empty configuration.
		return statusOK
	}
	return in.returnBytes((*buf)[start:end], arg(args, 3), arg(args, 4))
}

// proxyGetBufferStatus(type, length_ptr, flags_ptr) writes a buffer's
// length (flags are always 0).
func proxyGetBufferStatus(in *instance, args []uint64) status {
	buf, found := in.buffer(bufferType(arg(args, 0)))
	if !found {
		return statusNotFound
	}
	if st := in.putU32(arg(args, 1), uint32(len(*buf))); st != statusOK {
		return st
	}
	return in.putU32(arg(args, 2), 0)
}

// proxySetBufferBytes(type, start, size, data, data_size) edits a body with
// Envoy's rules: start 0 replaces the first size bytes with data (size 0
// prepends); start at or past the end appends; anything else is
// unsupported. Configuration and call buffers are read-only.
func proxySetBufferBytes(in *instance, args []uint64) status {
	bt := bufferType(arg(args, 0))
	if bt != bufferRequestBody && bt != bufferResponseBody {
		return statusBadArgument // configuration and call buffers are read-only
	}
	buf, found := in.buffer(bt)
	if !found {
		return statusNotFound
	}
	data, ok := in.readArg(args, 3)
	if !ok {
		return statusInvalidMemoryAccess
	}
	start, size := int(arg(args, 1)), int(arg(args, 2))
	switch {
	case start == 0:
		size = min(size, len(*buf))
		nb := make([]byte, 0, len(data)+len(*buf)-size)
		nb = append(nb, data...)
		*buf = append(nb, (*buf)[size:]...)
	case start >= len(*buf):
		*buf = append(*buf, data...)
	default:
		return statusBadArgument
	}
	return statusOK
}

func (in *instance) buffer(bt bufferType) (*[]byte, bool) {
	switch bt {
	case bufferVMConfiguration:
		b := in.p.cfg.VMConfiguration
		return &b, true
	case bufferPluginConfig:
		b := in.p.cfg.Configuration
		return &b, true
	case bufferHTTPCallResponse:
		if in.httpResp == nil {
			return nil, false
		}
		return &in.httpResp.Body, true
	}
	s := in.curS
	if s == nil {
		return nil, false
	}
	switch bt {
	case bufferRequestBody:
		return &s.reqBody, true
	case bufferResponseBody:
		return &s.respBody, true
	}
	return nil, false
}
