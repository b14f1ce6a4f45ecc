// Command abiguest is the test guest of package proxywasm: a filter written
// against the public API that exercises its hostcalls when run in a real
// host (gateway/wasmhost). The request header x-test selects the case; the
// guest reports what it observed in request headers (x-got-*), which the
// test reads back.
package main

import (
	"bytes"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ proxywasm.DefaultVMContext }

func (*vm) OnVMStart(size int) proxywasm.OnVMStartStatus {
	cfg, err := proxywasm.GetVMConfiguration()
	if err != nil || len(cfg) != size {
		return proxywasm.OnVMStartStatusFailed
	}
	return proxywasm.OnVMStartStatusOK
}

func (*vm) NewPluginContext(uint32) proxywasm.PluginContext { return &plugin{} }

type plugin struct {
	proxywasm.DefaultPluginContext
	config   string
	requests proxywasm.MetricCounter
	gauge    proxywasm.MetricGauge
	hist     proxywasm.MetricHistogram
	queue    uint32
}

func (p *plugin) OnPluginStart(size int) proxywasm.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil || len(cfg) != size {
		proxywasm.LogCriticalf("abiguest: plugin configuration: %v (%d bytes, want %d)", err, len(cfg), size)
		return proxywasm.OnPluginStartStatusFailed
	}
	if string(cfg) == "fail" {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.config = string(cfg)
	p.requests = proxywasm.DefineCounterMetric("abiguest_requests")
	p.gauge = proxywasm.DefineGaugeMetric("abiguest_gauge")
	p.hist = proxywasm.DefineHistogramMetric("abiguest_hist")
	if p.queue, err = proxywasm.RegisterSharedQueue("abiguest_q"); err != nil {
		return proxywasm.OnPluginStartStatusFailed
	}
	proxywasm.LogInfo("abiguest: started with " + p.config)
	return proxywasm.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(id uint32) proxywasm.HttpContext {
	return &stream{p: p, id: id}
}

type stream struct {
	proxywasm.DefaultHttpContext
	p    *plugin
	id   uint32
	test string
}

func set(k, v string) { _ = proxywasm.ReplaceHttpRequestHeader(k, v) }

func errStr(err error) string {
	if err == nil {
		return "ok"
	}
	switch {
	case errors.Is(err, proxywasm.ErrNotFound):
		return "not-found"
	case errors.Is(err, proxywasm.ErrCasMismatch):
		return "cas-mismatch"
	case errors.Is(err, proxywasm.ErrEmpty):
		return "empty"
	case errors.Is(err, proxywasm.ErrBadArgument):
		return "bad-argument"
	}
	return err.Error()
}

func (s *stream) OnHttpRequestHeaders(numHeaders int, endOfStream bool) proxywasm.Action {
	s.p.requests.Increment(1)
	s.test, _ = proxywasm.GetHttpRequestHeader("x-test")
	switch s.test {
	case "headers":
		hs, err := proxywasm.GetHttpRequestHeaders()
		set("x-got-num", strconv.Itoa(numHeaders)+"/"+strconv.Itoa(len(hs))+"/"+errStr(err))
		set("x-got-eos", strconv.FormatBool(endOfStream))
		_, err = proxywasm.GetHttpRequestHeader("x-absent")
		set("x-got-absent", errStr(err))
		_ = proxywasm.AddHttpRequestHeader("x-multi", "b")
		_ = proxywasm.RemoveHttpRequestHeader("x-del")
		v, _ := proxywasm.GetHttpRequestHeader(":path")
		set("x-got-path", v)
		set("x-got-config", s.p.config)
	case "setpairs":
		hs, _ := proxywasm.GetHttpRequestHeaders()
		out := [][2]string{}
		for _, h := range hs {
			if !strings.HasPrefix(h[0], "x-drop-") {
				out = append(out, h)
			}
		}
		out = append(out, [2]string{"x-got-setpairs", strconv.Itoa(len(hs) - len(out) + 1)})
		_ = proxywasm.ReplaceHttpRequestHeaders(out)
	case "properties":
		src, err := proxywasm.GetProperty([]string{"source", "address"})
		set("x-got-source", string(src)+"/"+errStr(err))
		peer, err := proxywasm.GetProperty([]string{"connection", "uri_san_peer_certificate"})
		set("x-got-peer", string(peer)+"/"+errStr(err))
		name, err := proxywasm.GetProperty([]string{"plugin_name"})
		set("x-got-plugin", string(name)+"/"+errStr(err))
		_, err = proxywasm.GetProperty([]string{"no", "such", "property"})
		set("x-got-missing", errStr(err))
		err = proxywasm.SetProperty([]string{"filter_state", "abiguest"}, []byte("v1"))
		v, err2 := proxywasm.GetProperty([]string{"filter_state", "abiguest"})
		set("x-got-setprop", errStr(err)+"/"+string(v)+"/"+errStr(err2))
	case "local":
		_ = proxywasm.SendHttpResponse(403, [][2]string{{"x-local", "yes"}, {"content-type", "text/plain"}}, []byte("denied by abiguest"), -1)
		return proxywasm.ActionPause
	case "shared":
		_, _, err := proxywasm.GetSharedData("abiguest_missing")
		r := []string{errStr(err)}
		r = append(r, errStr(proxywasm.SetSharedData("abiguest_k", []byte("v1"), 0)))
		v, cas, err := proxywasm.GetSharedData("abiguest_k")
		r = append(r, string(v)+"/"+errStr(err))
		r = append(r, errStr(proxywasm.SetSharedData("abiguest_k", []byte("v2"), cas)))
		r = append(r, errStr(proxywasm.SetSharedData("abiguest_k", []byte("v3"), cas))) // stale
		v, _, _ = proxywasm.GetSharedData("abiguest_k")
		r = append(r, string(v))
		set("x-got-shared", strings.Join(r, ","))
	case "queue":
		id, err := proxywasm.ResolveSharedQueue("", "abiguest_q")
		r := []string{strconv.FormatBool(id == s.p.queue) + "/" + errStr(err)}
		_, err = proxywasm.DequeueSharedQueue(s.p.queue)
		r = append(r, errStr(err))
		r = append(r, errStr(proxywasm.EnqueueSharedQueue(s.p.queue, []byte("item1"))))
		v, err := proxywasm.DequeueSharedQueue(s.p.queue)
		r = append(r, string(v)+"/"+errStr(err))
		_, err = proxywasm.ResolveSharedQueue("", "abiguest_nope")
		r = append(r, errStr(err))
		set("x-got-queue", strings.Join(r, ","))
	case "metrics":
		before := s.p.requests.Value()
		s.p.requests.Increment(2)
		s.p.gauge.Record(10)
		s.p.gauge.Add(-3)
		s.p.hist.Record(5)
		set("x-got-metrics", strconv.FormatUint(s.p.requests.Value()-before, 10)+","+strconv.FormatInt(s.p.gauge.Value(), 10))
	case "time":
		d := time.Since(proxywasm.GetCurrentTime())
		set("x-got-time", strconv.FormatBool(d > -time.Minute && d < time.Minute))
	case "log":
		proxywasm.LogTrace("abiguest trace")
		proxywasm.LogDebugf("abiguest debug %d", 1)
		proxywasm.LogWarn("abiguest warn")
		proxywasm.LogErrorf("abiguest error %s", "x")
		l, err := proxywasm.GetLogLevel()
		set("x-got-loglevel", l.String()+"/"+errStr(err))
	case "callout":
		_, err := proxywasm.DispatchHttpCall("upstream", [][2]string{
			{":method", "GET"}, {":path", "/callout"}, {":authority", "upstream"}, {"x-from", "abiguest"},
		}, nil, nil, 5000, func(numHeaders, bodySize, _ int) {
			body, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
			set("x-got-callout-body", string(body)+"/"+errStr(err))
			hs, _ := proxywasm.GetHttpCallResponseHeaders()
			st := ""
			for _, h := range hs {
				if h[0] == ":status" {
					st = h[1]
				}
			}
			set("x-got-callout-status", st+"/"+strconv.FormatBool(numHeaders == len(hs)))
			_ = proxywasm.ResumeHttpRequest()
		})
		if err != nil {
			set("x-got-callout-err", err.Error())
			return proxywasm.ActionContinue
		}
		return proxywasm.ActionPause
	case "callout-bad":
		_, err := proxywasm.DispatchHttpCall("no-such-cluster", [][2]string{
			{":method", "GET"}, {":path", "/"}, {":authority", "x"},
		}, nil, nil, 1000, func(int, int, int) {})
		set("x-got-callout-err", errStr(err))
	case "pin":
		// Many large host-to-guest returns with GCs in between: the buffers
		// the host writes into must survive (pinning).
		want, _ := proxywasm.GetHttpRequestHeader("x-big")
		ok := len(want) > 0
		for i := 0; i < 10 && ok; i++ {
			runtime.GC()
			got, err := proxywasm.GetHttpRequestHeader("x-big")
			hs, err2 := proxywasm.GetHttpRequestHeaders()
			ok = err == nil && err2 == nil && got == want && len(hs) == numHeaders
			_ = make([]byte, 1<<16) // churn
		}
		set("x-got-pin", strconv.FormatBool(ok)+"/"+strconv.Itoa(len(want)))
	case "body":
		return proxywasm.ActionContinue
	case "panic":
		panic("abiguest: requested panic")
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpRequestBody(bodySize int, endOfStream bool) proxywasm.Action {
	if s.test != "body" {
		return proxywasm.ActionContinue
	}
	if !endOfStream {
		return proxywasm.ActionPause // buffer until the whole body is here
	}
	b, err := proxywasm.GetHttpRequestBody(0, bodySize)
	if err != nil {
		proxywasm.LogErrorf("abiguest: read body: %v", err)
		return proxywasm.ActionContinue
	}
	_ = proxywasm.ReplaceHttpRequestBody(bytes.ToUpper(b))
	_ = proxywasm.AppendHttpRequestBody([]byte("|appended"))
	_ = proxywasm.PrependHttpRequestBody([]byte("prepended|"))
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpRequestTrailers(n int) proxywasm.Action {
	if s.test != "trailers" {
		return proxywasm.ActionContinue
	}
	v, err := proxywasm.GetHttpRequestTrailer("x-t")
	tr, err2 := proxywasm.GetHttpRequestTrailers()
	_ = proxywasm.AddHttpRequestTrailer("x-got-trailer", v+"/"+errStr(err)+"/"+strconv.Itoa(n)+"/"+strconv.Itoa(len(tr))+"/"+errStr(err2))
	_ = proxywasm.RemoveHttpRequestTrailer("x-t")
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseBody(bodySize int, endOfStream bool) proxywasm.Action {
	if s.test != "trailers" {
		return proxywasm.ActionContinue
	}
	if !endOfStream {
		return proxywasm.ActionPause
	}
	b, err := proxywasm.GetHttpResponseBody(0, bodySize)
	if err != nil {
		return proxywasm.ActionContinue
	}
	_ = proxywasm.ReplaceHttpResponseBody(bytes.ToUpper(b))
	_ = proxywasm.AppendHttpResponseBody([]byte("!"))
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseTrailers(int) proxywasm.Action {
	if s.test != "trailers" {
		return proxywasm.ActionContinue
	}
	tr, _ := proxywasm.GetHttpResponseTrailers()
	_ = proxywasm.ReplaceHttpResponseTrailers(append(tr, [2]string{"x-got-resp-trailers", strconv.Itoa(len(tr))}))
	_ = proxywasm.ReplaceHttpResponseTrailer("grpc-status", "0")
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	_ = proxywasm.AddHttpResponseHeader("x-abiguest", s.test)
	if s.test == "headers" {
		v, err := proxywasm.GetHttpResponseHeader(":status")
		_ = proxywasm.ReplaceHttpResponseHeader("x-got-status", v+"/"+errStr(err))
		_ = proxywasm.RemoveHttpResponseHeader("server")
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	proxywasm.LogInfof("abiguest: stream %d done (%s)", s.id, s.test)
}
