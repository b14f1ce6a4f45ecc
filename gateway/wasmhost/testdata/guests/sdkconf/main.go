// Command sdkconf is the conformance guest written with Meshwarden's guest
// ABI package (filters/proxywasm), the way product filters are written. The
// request header x-test picks a scenario; sdk_test.go checks the results.
package main

import (
	"strconv"
	"strings"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct {
	proxywasm.DefaultVMContext
	conf string
}

func (v *vm) OnVMStart(size int) proxywasm.OnVMStartStatus {
	b, err := proxywasm.GetVMConfiguration()
	if err != nil && size > 0 {
		return proxywasm.OnVMStartStatusFailed
	}
	v.conf = string(b)
	return proxywasm.OnVMStartStatusOK
}

func (v *vm) NewPluginContext(uint32) proxywasm.PluginContext { return &plugin{vm: v} }

type plugin struct {
	proxywasm.DefaultPluginContext
	vm       *vm // OnVMStart runs after NewPluginContext: read vm.conf lazily
	conf     string
	queue    uint32
	requests proxywasm.MetricCounter
	gauge    proxywasm.MetricGauge
	hist     proxywasm.MetricHistogram
	done     proxywasm.MetricCounter
}

func (p *plugin) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	b, _ := proxywasm.GetPluginConfiguration()
	p.conf = string(b)
	p.requests = proxywasm.DefineCounterMetric("sdk_requests")
	p.gauge = proxywasm.DefineGaugeMetric("sdk_gauge")
	p.hist = proxywasm.DefineHistogramMetric("sdk_hist")
	p.done = proxywasm.DefineCounterMetric("sdk_done")
	var err error
	if p.queue, err = proxywasm.RegisterSharedQueue("sdk-q"); err != nil {
		return proxywasm.OnPluginStartStatusFailed
	}
	if strings.Contains(p.conf, "tick") {
		if err := proxywasm.SetTickPeriodMilliSeconds(5); err != nil {
			return proxywasm.OnPluginStartStatusFailed
		}
	}
	proxywasm.LogInfof("sdk plugin started with %q", p.conf)
	return proxywasm.OnPluginStartStatusOK
}

func (p *plugin) OnTick() {
	for {
		v, cas, err := proxywasm.GetSharedData("sdk-ticks")
		n := 0
		if err == nil {
			n, _ = strconv.Atoi(string(v))
		}
		if proxywasm.SetSharedData("sdk-ticks", []byte(strconv.Itoa(n+1)), cas) == nil {
			return
		}
	}
}

func (p *plugin) OnQueueReady(id uint32) {
	for {
		v, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			return
		}
		_ = proxywasm.SetSharedData("sdk-queue-last", v, 0)
	}
}

func (p *plugin) NewHttpContext(id uint32) proxywasm.HttpContext { return &stream{p: p, id: id} }

type stream struct {
	proxywasm.DefaultHttpContext
	p    *plugin
	id   uint32
	test string
}

func add(k, v string) { _ = proxywasm.AddHttpRequestHeader(k, v) }

func errStr(err error) string {
	if err == nil {
		return "ok"
	}
	return "err"
}

func (s *stream) OnHttpRequestHeaders(n int, eos bool) proxywasm.Action {
	s.p.requests.Increment(1)
	s.test, _ = proxywasm.GetHttpRequestHeader("x-test")
	switch s.test {
	case "headers":
		hs, err := proxywasm.GetHttpRequestHeaders()
		_ = proxywasm.ReplaceHttpRequestHeader("x-replace", "new")
		_ = proxywasm.RemoveHttpRequestHeader("x-remove")
		_, missing := proxywasm.GetHttpRequestHeader("x-missing")
		hs2, _ := proxywasm.GetHttpRequestHeaders()
		_ = proxywasm.ReplaceHttpRequestHeaders(append(hs2, [2]string{"x-set", "1"}))
		add("x-r-count", strconv.Itoa(len(hs))+"/"+strconv.Itoa(n)+"/"+errStr(err))
		add("x-r-missing", errStr(missing))
	case "props":
		src, _ := proxywasm.GetProperty([]string{"source", "address"})
		san, _ := proxywasm.GetProperty([]string{"connection", "uri_san_peer_certificate"})
		name, _ := proxywasm.GetProperty([]string{"plugin_name"})
		setErr := proxywasm.SetProperty([]string{"wasm", "k"}, []byte("v"))
		got, _ := proxywasm.GetProperty([]string{"wasm", "k"})
		hm, err := proxywasm.GetPropertyMap([]string{"request", "headers"})
		add("x-r-prop-map", strconv.Itoa(len(hm))+","+errStr(err))
		add("x-r-props", strings.Join([]string{string(src), string(san), string(name), errStr(setErr), string(got), s.p.vm.conf, s.p.conf}, "|"))
	case "trap":
		panic("sdkconf: trap requested")
	case "call":
		_, err := proxywasm.DispatchHttpCall("upstream", [][2]string{{":method", "GET"}, {":path", "/sdk"}, {":authority", "u"}, {"x-from", "sdk"}}, nil, nil, 2000,
			func(nh, size, nt int) {
				st := ""
				hs, _ := proxywasm.GetHttpCallResponseHeaders()
				for _, h := range hs {
					if h[0] == ":status" {
						st = h[1]
					}
				}
				body, _ := proxywasm.GetHttpCallResponseBody(0, size)
				add("x-r-call", st+"|"+string(body))
				_ = proxywasm.ResumeHttpRequest()
			})
		if err != nil {
			add("x-r-call", "dispatch failed: "+err.Error())
			return proxywasm.ActionContinue
		}
		return proxywasm.ActionPause
	case "local":
		_ = proxywasm.SendHttpResponse(418, [][2]string{{"x-sdk", "1"}}, []byte("teapot"), -1)
		return proxywasm.ActionPause
	case "shared":
		err0 := proxywasm.SetSharedData("sdk-k", []byte("a"), 0)
		_, cas, err1 := proxywasm.GetSharedData("sdk-k")
		err2 := proxywasm.SetSharedData("sdk-k", []byte("b"), cas+7)
		err3 := proxywasm.SetSharedData("sdk-k", []byte("b"), cas)
		add("x-r-shared", strings.Join([]string{errStr(err0), errStr(err1), errStr(err2), errStr(err3)}, ","))
	case "read":
		k, _ := proxywasm.GetHttpRequestHeader("x-key")
		v, _, err := proxywasm.GetSharedData(k)
		add("x-r-value", errStr(err)+":"+string(v))
	case "queue":
		id, err := proxywasm.ResolveSharedQueue(s.p.vm.conf, "sdk-q")
		item, _ := proxywasm.GetHttpRequestHeader("x-item")
		err2 := proxywasm.EnqueueSharedQueue(id, []byte(item))
		add("x-r-queue", errStr(err)+","+errStr(err2))
	case "metrics":
		s.p.gauge.Record(5)
		s.p.gauge.Add(-2)
		s.p.hist.Record(9)
		add("x-r-metrics", strconv.FormatUint(s.p.requests.Value(), 10)+","+strconv.FormatInt(s.p.gauge.Value(), 10))
	case "misc":
		lvl, err := proxywasm.GetLogLevel()
		now := proxywasm.GetCurrentTime()
		proxywasm.LogWarnf("sdk warn %d", 7)
		add("x-r-misc", strconv.Itoa(int(lvl))+","+errStr(err)+","+strconv.FormatInt(now.UnixNano(), 10))
	case "body":
		if !eos {
			return proxywasm.ActionPause
		}
	case "close":
		_ = proxywasm.CloseHttpRequest()
		return proxywasm.ActionPause
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpRequestBody(size int, eos bool) proxywasm.Action {
	if s.test != "body" {
		return proxywasm.ActionContinue
	}
	if !eos {
		return proxywasm.ActionPause
	}
	b, _ := proxywasm.GetHttpRequestBody(0, size)
	_ = proxywasm.ReplaceHttpRequestBody([]byte(strings.ToUpper(string(b))))
	_ = proxywasm.PrependHttpRequestBody([]byte("<"))
	_ = proxywasm.AppendHttpRequestBody([]byte(">"))
	add("x-r-body", strconv.Itoa(size))
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpRequestTrailers(int) proxywasm.Action {
	_ = proxywasm.AddHttpRequestTrailer("x-r-trailer", "sdk")
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	st, _ := proxywasm.GetHttpResponseHeader(":status")
	_ = proxywasm.AddHttpResponseHeader("x-r-resp", st+"|"+s.test)
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseBody(size int, eos bool) proxywasm.Action {
	if eos {
		_ = proxywasm.AppendHttpResponseBody([]byte("!"))
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseTrailers(int) proxywasm.Action {
	_ = proxywasm.ReplaceHttpResponseTrailer("x-r-resp-trailer", "sdk")
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpStreamDone() { s.p.done.Increment(1) }
