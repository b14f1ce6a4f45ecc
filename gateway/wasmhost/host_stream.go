package wasmhost

import (
	"bytes"
	"fmt"
)

// streamFuncs are the stream control hostcalls: local replies, resuming and
// closing streams, and switching the effective context.
var streamFuncs = []hostFunc{
	{"proxy_send_local_response", i32s(8), proxySendLocalResponse},
	{"proxy_continue_stream", i32s(1), proxyContinueStream},
	{"proxy_continue_request", nil, proxyContinueRequest},
	{"proxy_continue_response", nil, proxyContinueResponse},
	{"proxy_close_stream", i32s(1), proxyCloseStream},
	{"proxy_clear_route_cache", nil, proxyOK},
	{"proxy_set_effective_context", i32s(1), proxySetEffectiveContext},
	{"proxy_done", nil, proxyOK},
}

// proxySendLocalResponse(status, details, details_size, body, body_size,
// headers, headers_size, grpc_status) answers the stream locally.
func proxySendLocalResponse(in *instance, args []uint64) status {
	st := in.curS
	if st == nil {
		return statusNotFound
	}
	details, ok1 := in.readArg(args, 1)
	body, ok2 := in.readArg(args, 3)
	hb, ok3 := in.readArg(args, 5)
	if !ok1 || !ok2 || !ok3 {
		return statusInvalidMemoryAccess
	}
	code := int(arg(args, 0))
	if code < 200 || code > 599 {
		return statusBadArgument
	}
	pairs, ok := decodePairs(hb, in.p.cfg.MaxHeaders)
	if !ok {
		return in.limit(fmt.Sprintf("local response headers are malformed or exceed MaxHeaders=%d", in.p.cfg.MaxHeaders))
	}
	st.localReply = &LocalReply{Status: code, Headers: pairs, Body: bytes.Clone(body), Details: string(details), GRPCStatus: int32(arg(args, 7))}
	return statusOK
}

// proxyContinueStream(stream_type) resumes the paused request or response.
func proxyContinueStream(in *instance, args []uint64) status {
	return in.continueStream(streamType(arg(args, 0)))
}

// proxyContinueRequest() is ABI 0.2.0's proxy_continue_stream(request).
func proxyContinueRequest(in *instance, _ []uint64) status { return in.continueStream(streamRequest) }

// proxyContinueResponse() is ABI 0.2.0's proxy_continue_stream(response).
func proxyContinueResponse(in *instance, _ []uint64) status {
	return in.continueStream(streamResponse)
}

func (in *instance) continueStream(t streamType) status {
	st := in.curS
	if st == nil || t > streamResponse {
		return statusBadArgument
	}
	st.continued[t] = true
	return statusOK
}

// proxyCloseStream(stream_type) resets the current stream.
func proxyCloseStream(in *instance, _ []uint64) status {
	if in.curS == nil {
		return statusBadArgument
	}
	in.curS.closeStream = true
	return statusOK
}

// proxyOK answers hostcalls that have nothing to do in the gateway
// (proxy_clear_route_cache: routes are matched after the filters;
// proxy_done: contexts are deleted by the host).
func proxyOK(*instance, []uint64) status { return statusOK }

// proxySetEffectiveContext(context_id) makes the root context or one of the
// instance's streams current for the following hostcalls.
func proxySetEffectiveContext(in *instance, args []uint64) status {
	id := arg(args, 0)
	if id == in.rootID {
		in.setContext(id, nil)
		return statusOK
	}
	st := in.streams[id]
	if st == nil {
		return statusBadArgument
	}
	in.setContext(id, st)
	return statusOK
}
