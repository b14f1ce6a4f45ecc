package trace

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

type mapReq map[string]string

func (m mapReq) Header(n string) (string, bool) { v, ok := m[n]; return v, ok }
func (m mapReq) Values(n string) []string {
	if v, ok := m[n]; ok && v != "" {
		return []string{v}
	}
	return nil
}
func (m mapReq) SetHeader(n, v string) { m[n] = v }
func (m mapReq) RemoveHeader(n string) { delete(m, n) }

var _ Request = mapReq(nil)

const (
	tp  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid = "00f067aa0ba902b7"
)

func engine(t testing.TB, js string) *Engine {
	t.Helper()
	cfg, err := traceconfig.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(cfg)
}

func TestStart(t *testing.T) {
	tests := []struct {
		name       string
		cfg        string
		req        mapReq
		from       string
		sameTrace  bool
		sampled    bool
		tracestate string // "-" means removed
		baggage    string
	}{
		{"valid traceparent continues the trace", `{}`, mapReq{"traceparent": tp, "tracestate": "rojo=1, congo=2"}, "traceparent", true, true, "rojo=1,congo=2", ""},
		{"parent not sampled is followed", `{}`, mapReq{"traceparent": tp[:53] + "00"}, "traceparent", true, false, "", ""},
		{"ignoreParent applies the ratio", `{"sampling":{"ratio":0,"ignoreParent":true}}`, mapReq{"traceparent": tp}, "traceparent", true, false, "", ""},
		{"invalid traceparent starts a new trace and drops tracestate", `{}`, mapReq{"traceparent": "00-" + strings.ToUpper(tid) + "-" + sid + "-01", "tracestate": "rojo=1"}, "", false, true, "-", ""},
		{"invalid tracestate is dropped", `{}`, mapReq{"traceparent": tp, "tracestate": "Rojo=1"}, "traceparent", true, true, "-", ""},
		{"ratio 0 root not sampled", `{"sampling":{"ratio":0}}`, mapReq{}, "", false, false, "", ""},
		{"b3 single", `{}`, mapReq{"b3": tid + "-" + sid + "-1"}, "b3", true, true, "", ""},
		{"b3 multi", `{}`, mapReq{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-sampled": "1"}, "b3", true, true, "", ""},
		{"b3 ignored when disabled", `{"acceptB3":false}`, mapReq{"b3": tid + "-" + sid + "-1"}, "", false, true, "", ""},
		{"traceparent wins over b3", `{}`, mapReq{"traceparent": tp, "b3": "11111111111111111111111111111111-1111111111111111-0"}, "traceparent", true, true, "", ""},
		{"baggage over-limit cleaned", `{}`, mapReq{"baggage": "a=1,bad key=2,mw-dye=canary"}, "", false, true, "", "a=1,mw-dye=canary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engine(t, tt.cfg)
			h, err := e.Start(tt.req, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if h.From != tt.from {
				t.Errorf("From = %q, want %q", h.From, tt.from)
			}
			if (h.Span.TraceID.String() == tid) != tt.sameTrace {
				t.Errorf("trace id %s, same trace want %v", h.Span.TraceID, tt.sameTrace)
			}
			if tt.sameTrace && h.Parent.String() != sid {
				t.Errorf("parent = %s, want %s", h.Parent, sid)
			}
			if h.Span.SpanID.String() == sid || !h.Span.SpanID.IsValid() {
				t.Errorf("span id %s must be a new child id", h.Span.SpanID)
			}
			if h.Span.Sampled() != tt.sampled {
				t.Errorf("sampled = %v, want %v", h.Span.Sampled(), tt.sampled)
			}
			out, err := tracectx.ParseTraceparent(tt.req["traceparent"])
			if err != nil || out != h.Span {
				t.Errorf("outgoing traceparent %q = %+v %v, want %+v", tt.req["traceparent"], out, err, h.Span)
			}
			ts, has := tt.req["tracestate"]
			switch {
			case tt.tracestate == "-" && has:
				t.Errorf("tracestate %q kept, want removed", ts)
			case tt.tracestate != "-" && tt.tracestate != "" && ts != tt.tracestate:
				t.Errorf("tracestate = %q, want %q", ts, tt.tracestate)
			}
			if tt.baggage != "" && tt.req["baggage"] != tt.baggage {
				t.Errorf("baggage = %q, want %q", tt.req["baggage"], tt.baggage)
			}
		})
	}
}

func TestRatioSamplingIsDeterministicAndProportional(t *testing.T) {
	e := engine(t, `{"sampling":{"ratio":0.25}}`)
	n := 0
	const total = 4000
	for i := 0; i < total; i++ {
		req := mapReq{}
		h, err := e.Start(req, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if h.Span.Sampled() {
			n++
		}
		if e.sampleRoot(h.Span.TraceID) != h.Span.Sampled() {
			t.Fatal("sampling is not a function of the trace id")
		}
	}
	if n < total*20/100 || n > total*30/100 {
		t.Errorf("sampled %d of %d at ratio 0.25", n, total)
	}
}

func TestPropagateB3(t *testing.T) {
	e := engine(t, `{"propagateB3":true}`)
	req := mapReq{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-sampled": "1"}
	h, err := e.Start(req, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if want := tid + "-" + h.Span.SpanID.String() + "-1"; req["b3"] != want {
		t.Errorf("b3 = %q, want %q", req["b3"], want)
	}
	if _, ok := req["x-b3-spanid"]; ok {
		t.Error("stale x-b3-spanid kept")
	}
}

func TestExportIsValidOTLPJSON(t *testing.T) {
	e := engine(t, `{"serviceName":"payments"}`)
	h, err := e.Start(mapReq{"traceparent": tp}, bytes.NewReader(bytes.Repeat([]byte{9}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	s := &Span{TraceID: h.Span.TraceID, SpanID: h.Span.SpanID, Parent: h.Parent, Name: "POST /v1/transfers", StartNS: 1, EndNS: 5,
		Method: "POST", Path: "/v1/transfers", Route: "payments", Status: 503, Lane: "canary", Peer: "spiffe://a/b", PeerAddr: "10.0.0.1"}
	body := e.AppendExport(nil, [][]byte{e.AppendSpanJSON(nil, s), e.AppendSpanJSON(nil, s)})
	// OTLP/JSON writes ids in hex where protojson expects base64: convert
	// them, then decode strictly with the OTLP protos.
	idRE := regexp.MustCompile(`"(traceId|spanId|parentSpanId)":"([0-9a-f]+)"`)
	if n := len(idRE.FindAll(body, -1)); n != 6 {
		t.Fatalf("%d hex ids in the export, want 6: %s", n, body)
	}
	b64 := idRE.ReplaceAllFunc(body, func(m []byte) []byte {
		sub := idRE.FindSubmatch(m)
		raw, _ := hex.DecodeString(string(sub[2]))
		return []byte(`"` + string(sub[1]) + `":"` + base64.StdEncoding.EncodeToString(raw) + `"`)
	})
	var req coltrace.ExportTraceServiceRequest
	if err := (protojson.UnmarshalOptions{}).Unmarshal(b64, &req); err != nil {
		t.Fatalf("export is not valid OTLP JSON: %v\n%s", err, body)
	}
	rs := req.ResourceSpans[0]
	if rs.Resource.Attributes[0].GetValue().GetStringValue() != "payments" {
		t.Errorf("service.name = %v", rs.Resource.Attributes[0])
	}
	spans := rs.ScopeSpans[0].Spans
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	sp := spans[0]
	if tracectx.TraceID(sp.TraceId).String() != tid || tracectx.SpanID(sp.ParentSpanId).String() != sid || sp.EndTimeUnixNano != 5 || sp.Status.GetCode() != 2 {
		t.Errorf("span = %v", sp)
	}
	attrs := map[string]string{}
	for _, a := range sp.Attributes {
		attrs[a.Key] = a.Value.GetStringValue()
		if a.Key == "http.response.status_code" && a.Value.GetIntValue() != 503 {
			t.Errorf("status attr = %v", a.Value)
		}
	}
	for k, v := range map[string]string{"http.request.method": "POST", "url.path": "/v1/transfers", "http.route": "payments", "mw.lane": "canary", "mw.peer.identity": "spiffe://a/b", "client.address": "10.0.0.1"} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
}
