package otlpsink

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

func TestOTLPSinkJSONAndProto(t *testing.T) {
	sink := New(10)
	srv := httptest.NewServer(sink)
	defer srv.Close()

	js := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"mw-trace"}}]},
	 "scopeSpans":[{"spans":[{"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7","name":"GET /x",
	 "startTimeUnixNano":"100","endTimeUnixNano":"200","attributes":[{"key":"http.status_code","value":{"intValue":"200"}}]}]}]}]}`
	resp, err := http.Post(srv.URL+"/v1/traces", "application/json", bytes.NewBufferString(js))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("json post: %v %v", err, resp)
	}
	tid := []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	req := &coltrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "gateway"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{TraceId: tid, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ParentSpanId: []byte{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, Name: "proxy", StartTimeUnixNano: 150, EndTimeUnixNano: 190}}}},
	}}}
	b, _ := proto.Marshal(req)
	resp, err = http.Post(srv.URL+"/v1/traces", "application/x-protobuf", bytes.NewReader(b))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("proto post: %v %v", err, resp)
	}
	spans := sink.Spans("4bf92f3577b34da6a3ce929d0e0e4736")
	if len(spans) != 2 {
		t.Fatalf("want 2 spans of the trace, got %d: %+v", len(spans), spans)
	}
	if spans[0].Service != "mw-trace" || spans[0].Attrs["http.status_code"] != "200" || spans[1].ParentID != "00f067aa0ba902b7" || spans[1].Service != "gateway" {
		t.Fatalf("unexpected spans: %+v", spans)
	}
	resp, err = http.Post(srv.URL+"/v1/traces", "application/json", bytes.NewBufferString("{not json"))
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad payload must be 400: %v %v", err, resp)
	}
	var list []TraceSummary
	if code := probe.GetJSON(t, srv.URL+"/v1/traces", &list); code != 200 || len(list) != 1 || list[0].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		list[0].Spans != 2 || list[0].Root != "GET /x" || list[0].Services != "gateway,mw-trace" || list[0].DurationMS != 0.0001 {
		t.Fatalf("GET /v1/traces: %d %+v", code, list)
	}
	var one []Span
	if code := probe.GetJSON(t, srv.URL+"/v1/traces?trace_id=4bf92f3577b34da6a3ce929d0e0e4736", &one); code != 200 || len(one) != 2 || one[0].Name != "GET /x" {
		t.Fatalf("GET one trace: %d %+v", code, one)
	}
	if code := probe.GetJSON(t, srv.URL+"/v1/traces?trace_id=00000000000000000000000000000001", nil); code != 404 {
		t.Fatalf("GET an unknown trace: %d, want 404", code)
	}
}
