package wasmhost

import (
	"bytes"
	"context"
	"time"
)

// httpCallFuncs are the HTTP callout hostcalls.
var httpCallFuncs = []hostFunc{
	{"proxy_http_call", i32s(10), proxyHTTPCall},
}

// proxyHTTPCall(cluster, cluster_size, headers, headers_size, body,
// body_size, trailers, trailers_size, timeout_ms, token_ptr) starts a call
// through PluginConfig.HTTPCaller and writes its token; the response comes
// back to the root context as proxy_on_http_call_response.
func proxyHTTPCall(in *instance, args []uint64) status {
	cluster, ok1 := in.readArg(args, 0)
	hb, ok2 := in.readArg(args, 2)
	body, ok3 := in.readArg(args, 4)
	tb, ok4 := in.readArg(args, 6)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return statusInvalidMemoryAccess
	}
	if !in.writable(args, 9, 4) {
		return statusInvalidMemoryAccess
	}
	headers, ok := decodePairs(hb, in.p.cfg.MaxHeaders)
	if !ok {
		return statusBadArgument
	}
	trailers, ok := decodePairs(tb, in.p.cfg.MaxHeaders)
	if !ok {
		return statusBadArgument
	}
	hh := &Headers{Pairs: headers}
	for _, k := range []string{":method", ":path", ":authority"} {
		if v, ok := hh.Get(k); !ok || v == "" {
			return statusBadArgument
		}
	}
	caller := in.p.cfg.HTTPCaller
	name := string(cluster)
	if caller == nil || !caller.HasCluster(name) {
		return statusBadArgument
	}
	req := HTTPCallRequest{Headers: headers, Body: bytes.Clone(body), Trailers: trailers, Timeout: time.Duration(arg(args, 8)) * time.Millisecond}
	return in.putU32(arg(args, 9), in.startHTTPCall(caller, name, req))
}

// startHTTPCall registers a pending call for the current context and runs it
// in the background, bounded by the plugin's lifetime; its response is
// posted to the instance unless the call was cancelled meanwhile.
func (in *instance) startHTTPCall(caller HTTPCaller, cluster string, req HTTPCallRequest) uint32 {
	in.nextToken++
	token := in.nextToken
	ctx, cancel := context.WithCancel(in.p.ctx)
	in.calls[token] = &pendingCall{ctxID: in.cur, cancel: cancel}
	if in.curS != nil {
		in.curS.pendingCalls++
	}
	go func() {
		resp, err := caller.Call(ctx, cluster, req)
		if err != nil {
			resp = HTTPCallResponse{}
		}
		if ctx.Err() != nil {
			return // cancelled with its context
		}
		in.post(event{kind: evHTTP, token: token, resp: resp})
	}()
	return token
}
