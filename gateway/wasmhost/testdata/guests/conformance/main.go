//go:build wasip1

// Command conformance is a proxy-wasm 0.2.1 guest that exercises every
// hostcall the host implements. The request header x-test picks a scenario;
// results come back as headers (x-r-*), bodies or local replies that
// conformance_test.go checks.
package main

import (
	"strconv"
	"strings"

	g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"
)

func main() {}

var (
	rootID                           uint32
	vmConfig, pluginConfig           string
	mCounter, mGauge, mHist, mLogged uint32
	queueID                          uint32
	scenario                         = map[uint32]string{}
	callers                          = map[uint32]uint32{} // token -> context
	tickWaiters                      []uint32
)

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {
	g.Unpin()
	if parent == 0 {
		rootID = id
	}
}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 {
	g.Unpin()
	b, _ := g.Buffer(g.VMConfig, 0, size)
	vmConfig = string(b)
	mCounter, _ = g.DefineMetric(0, "conf_requests")
	mGauge, _ = g.DefineMetric(1, "conf_gauge")
	mHist, _ = g.DefineMetric(2, "conf_hist")
	mLogged, _ = g.DefineMetric(0, "conf_logged")
	queueID, _ = g.RegisterQueue("conf-q")
	g.Log(2, "vm started")
	return 1
}

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	g.Unpin()
	b, _ := g.Buffer(g.PluginConfig, 0, size)
	pluginConfig = string(b)
	if pluginConfig == "reject" {
		return 0
	}
	if pluginConfig == "once" { // only the first instance of the vm_id starts
		if _, _, s := g.SharedData("started-once"); s == g.OK {
			return 0
		}
		g.SetSharedData("started-once", "1", 0)
	}
	if strings.Contains(pluginConfig, "tick") {
		g.SetTickPeriod(5)
	}
	return 1
}

//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	g.Unpin()
	for {
		v, cas, st := g.SharedData("ticks")
		n := 0
		if st == g.OK {
			n, _ = strconv.Atoi(string(v))
		}
		if g.SetSharedData("ticks", strconv.Itoa(n+1), cas) == g.OK {
			break
		}
	}
	for _, id := range tickWaiters {
		g.SetEffectiveContext(id)
		g.AddHeader(g.RequestHeaders, "x-r-ticked", "1")
		g.ContinueStream(0)
	}
	tickWaiters = nil
}

//go:wasmexport proxy_on_queue_ready
func onQueueReady(root, id uint32) {
	g.Unpin()
	for {
		v, st := g.Dequeue(id)
		if st != g.OK {
			break
		}
		g.SetSharedData("queue-last", string(v), 0)
	}
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(root, token, nh, bodySize, nt uint32) {
	g.Unpin()
	ctx, ok := callers[token]
	if !ok {
		return
	}
	delete(callers, token)
	pairs, _ := g.Pairs(g.CallHeaders)
	status, _ := g.Header(g.CallHeaders, ":status")
	body, _ := g.Buffer(g.CallBody, 0, bodySize)
	g.SetEffectiveContext(ctx)
	if scenario[ctx] == "resp-call" {
		g.AddHeader(g.ResponseHeaders, "x-r-resp-call", status)
		g.ContinueStream(1)
		return
	}
	if scenario[ctx] == "call-reply" {
		g.SendLocalResponse(201, "from-call", "call said: "+string(body), [][2]string{{"x-r-call-headers", strconv.Itoa(len(pairs))}}, -1)
		return
	}
	g.AddHeader(g.RequestHeaders, "x-r-call-status", status)
	g.AddHeader(g.RequestHeaders, "x-r-call-body", string(body))
	g.AddHeader(g.RequestHeaders, "x-r-call-root", strconv.FormatBool(root == rootID))
	g.AddHeader(g.RequestHeaders, "x-r-call-nh", strconv.Itoa(int(nh)))
	g.ContinueStream(0)
}

func st(v uint32) string { return strconv.Itoa(int(v)) }

func add(k, v string) { g.AddHeader(g.RequestHeaders, k, v) }

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	g.IncrementMetric(mCounter, 1)
	test, _ := g.Header(g.RequestHeaders, "x-test")
	scenario[ctx] = test
	switch test {
	case "headers":
		pairs, s := g.Pairs(g.RequestHeaders)
		size, _ := g.MapSize(g.RequestHeaders)
		add("x-r-pairs", st(s)+"/"+strconv.Itoa(len(pairs))+"/"+strconv.Itoa(int(n)))
		add("x-r-size-ok", strconv.FormatBool(int(size) == len(g.EncodePairs(pairs))))
		g.ReplaceHeader(g.RequestHeaders, "x-replace", "new")
		g.RemoveHeader(g.RequestHeaders, "x-remove")
		_, s = g.Header(g.RequestHeaders, "x-missing")
		add("x-r-missing", st(s))
		pairs, _ = g.Pairs(g.RequestHeaders)
		pairs = append(pairs, [2]string{"x-set-pairs", "ok"})
		add("x-r-set-pairs-status", st(g.SetPairs(g.RequestHeaders, append(pairs, [2]string{"x-r-set-pairs-status", "0"}))))
		_, s = g.Header(g.ResponseHeaders, ":status")
		add("x-r-resp-map-in-request", st(s))
	case "properties":
		for _, p := range []string{"source.address", "destination.address", "connection.uri_san_peer_certificate",
			"connection.subject_peer_certificate", "connection.tls_version", "plugin_name", "plugin_root_id", "plugin_vm_id", "node.id",
			"request.path", "request.method", "request.host", "request.headers.x-test", "route_name", "custom.prop"} {
			v, s := g.Property(strings.Split(p, ".")...)
			if s != g.OK {
				add("x-r-p-"+p, "status="+st(s))
				continue
			}
			add("x-r-p-"+p, string(v))
		}
		v, _ := g.Property("source", "port")
		if len(v) == 8 {
			add("x-r-p-source.port", strconv.Itoa(int(v[0])|int(v[1])<<8))
		}
		v, _ = g.Property("connection", "mtls")
		add("x-r-p-connection.mtls", strconv.Itoa(len(v))+":"+strconv.Itoa(int(v[0])))
		add("x-r-set-prop", st(g.SetProperty("wasm\x00mine", "value")))
		v, s := g.Property("wasm", "mine")
		add("x-r-get-set-prop", st(s)+":"+string(v))
		_, s = g.Property("no", "such")
		add("x-r-p-missing", st(s))
	case "local":
		g.SendLocalResponse(403, "denied-by-test", "no entry", [][2]string{{"x-local", "1"}, {"content-type", "text/plain"}}, -1)
		return 1
	case "call", "call-reply":
		tok, s := g.HTTPCall("upstream", [][2]string{{":method", "GET"}, {":path", "/callee?x=1"}, {":authority", "upstream"}, {"x-from", "guest"}}, "", 2000)
		if s != g.OK {
			add("x-r-call-dispatch", st(s))
			return 0
		}
		callers[tok] = ctx
		return 1
	case "call-bad":
		_, s1 := g.HTTPCall("nope", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "x"}}, "", 1000)
		_, s2 := g.HTTPCall("upstream", [][2]string{{":method", "GET"}}, "", 1000)
		add("x-r-call-bad", st(s1)+","+st(s2))
	case "shared":
		_, _, s0 := g.SharedData("conf-shared-" + vmConfig)
		s1 := g.SetSharedData("conf-shared-"+vmConfig, "one", 0)
		v, cas, s2 := g.SharedData("conf-shared-" + vmConfig)
		s3 := g.SetSharedData("conf-shared-"+vmConfig, "two", cas+1000)
		s4 := g.SetSharedData("conf-shared-"+vmConfig, "two", cas)
		v2, _, _ := g.SharedData("conf-shared-" + vmConfig)
		add("x-r-shared", strings.Join([]string{st(s0), st(s1), st(s2) + ":" + string(v), st(s3), st(s4) + ":" + string(v2)}, ","))
	case "read-shared":
		k, _ := g.Header(g.RequestHeaders, "x-key")
		v, _, s := g.SharedData(k)
		add("x-r-value", st(s)+":"+string(v))
	case "queue":
		id, s := g.ResolveQueue(vmConfig, "conf-q")
		_, s2 := g.ResolveQueue(vmConfig, "no-such-q")
		v, _ := g.Header(g.RequestHeaders, "x-item")
		add("x-r-queue", st(s)+","+strconv.FormatBool(id == queueID)+","+st(s2)+","+st(g.Enqueue(id, v)))
	case "metrics":
		g.IncrementMetric(mCounter, 2)
		c, s1 := g.Metric(mCounter)
		s2 := g.RecordMetric(mGauge, 42)
		gv, _ := g.Metric(mGauge)
		g.IncrementMetric(mGauge, -2)
		gv2, _ := g.Metric(mGauge)
		s3 := g.RecordMetric(mHist, 7)
		_, s4 := g.Metric(mHist)
		s5 := g.IncrementMetric(mCounter, -1)
		add("x-r-metrics", strings.Join([]string{st(s1) + ":" + strconv.FormatUint(c, 10), st(s2), strconv.FormatUint(gv, 10), strconv.FormatUint(gv2, 10), st(s3), st(s4), st(s5)}, ","))
	case "time":
		t, s := g.Now()
		lvl, s2 := g.LogLevel()
		add("x-r-time", st(s)+":"+strconv.FormatUint(t, 10))
		add("x-r-log-level", st(s2)+":"+strconv.Itoa(int(lvl)))
		for l := uint32(0); l <= 5; l++ {
			g.Log(l, "log at "+strconv.Itoa(int(l)))
		}
		add("x-r-foreign", st(g.CallForeign("nothing")))
		add("x-r-done", st(g.Done()))
		add("x-r-clear-route-cache", st(g.ClearRouteCache()))
		code, msg, s3 := g.Status()
		add("x-r-status", st(s3)+":"+strconv.Itoa(int(code))+":"+string(msg))
	case "config":
		add("x-r-vm-config", vmConfig)
		add("x-r-plugin-config", pluginConfig)
		n, _ := g.BufferLen(g.PluginConfig)
		b, _ := g.Buffer(g.PluginConfig, 1, 3)
		add("x-r-plugin-config-part", strconv.Itoa(int(n))+":"+string(b))
		add("x-r-set-config", st(g.SetBuffer(g.PluginConfig, 0, 0, "x")))
	case "effective":
		bad := g.SetEffectiveContext(9999)
		root := g.SetEffectiveContext(rootID)
		_, s := g.Header(g.RequestHeaders, "x-test")
		g.SetEffectiveContext(ctx)
		add("x-r-effective-bad", st(bad))
		add("x-r-effective-root", st(root))
		add("x-r-root-headers", st(s))
	case "tick-wait":
		tickWaiters = append(tickWaiters, ctx)
		return 1
	case "pause-forever":
		return 1
	case "hold-headers":
		if eos == 0 {
			return 1 // StopIteration: see the body first
		}
	case "close":
		g.CloseStream(0)
		return 1
	}
	return 0
}

//go:wasmexport proxy_on_request_body
func onRequestBody(ctx, size, eos uint32) uint32 {
	g.Unpin()
	switch scenario[ctx] {
	case "body":
		if eos == 0 {
			return 1 // buffer until the end
		}
		n, _ := g.BufferLen(g.RequestBody)
		b, _ := g.Buffer(g.RequestBody, 0, n)
		_, s := g.Buffer(g.RequestBody, n+5, 1)
		g.SetBuffer(g.RequestBody, 0, 0, "[")
		g.SetBuffer(g.RequestBody, n+1, 0, "]")
		s2 := g.SetBuffer(g.RequestBody, 2, 1, "x")
		g.SetBuffer(g.RequestBody, 100000, 0, "("+strconv.Itoa(int(size))+"="+strconv.Itoa(int(n))+":"+string(b)+";"+st(s)+","+st(s2)+")")
	case "hold-headers":
		if eos == 0 {
			return 1
		}
		g.AddHeader(g.RequestHeaders, "x-r-body-len", strconv.Itoa(int(size)))
	case "body-replace":
		n, _ := g.BufferLen(g.RequestBody)
		g.SetBuffer(g.RequestBody, 0, n, "replaced")
	case "body-local":
		if eos == 1 {
			b, _ := g.Buffer(g.RequestBody, 0, size)
			g.SendLocalResponse(200, "", "echo:"+string(b), nil, -1)
			return 1
		}
		return 1
	}
	return 0
}

//go:wasmexport proxy_on_request_trailers
func onRequestTrailers(ctx, n uint32) uint32 {
	g.Unpin()
	v, _ := g.Header(g.RequestTrailers, "grpc-status")
	g.AddHeader(g.RequestTrailers, "x-r-trailer", "seen:"+v+":"+strconv.Itoa(int(n)))
	return 0
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	status, _ := g.Header(g.ResponseHeaders, ":status")
	path, _ := g.Header(g.RequestHeaders, ":path")
	g.AddHeader(g.ResponseHeaders, "x-r-resp", status+" "+path+" "+scenario[ctx])
	if scenario[ctx] == "resp-call" {
		tok, s := g.HTTPCall("upstream", [][2]string{{":method", "GET"}, {":path", "/resp"}, {":authority", "upstream"}}, "", 2000)
		if s == g.OK {
			callers[tok] = ctx
			return 1 // resumed by the call's response with proxy_continue_stream(response)
		}
	}
	v, s := g.Property("response", "code")
	if s == g.OK && len(v) == 8 {
		g.AddHeader(g.ResponseHeaders, "x-r-resp-code", strconv.Itoa(int(v[0])|int(v[1])<<8))
	}
	return 0
}

//go:wasmexport proxy_on_response_body
func onResponseBody(ctx, size, eos uint32) uint32 {
	g.Unpin()
	if eos == 1 {
		g.SetBuffer(g.ResponseBody, size, 0, " +tail")
	}
	return 0
}

//go:wasmexport proxy_on_response_trailers
func onResponseTrailers(ctx, n uint32) uint32 {
	g.Unpin()
	g.ReplaceHeader(g.ResponseTrailers, "x-r-resp-trailer", strconv.Itoa(int(n)))
	return 0
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 {
	g.Unpin()
	return 1
}

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {
	g.Unpin()
	g.IncrementMetric(mLogged, 1)
}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {
	g.Unpin()
	delete(scenario, ctx)
}
