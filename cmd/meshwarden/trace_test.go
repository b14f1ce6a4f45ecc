package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
)

// traceFixture is one request across three hops as OTLP/JSON: the
// caller's span is not in the sink, so the gateway's span is the root.
const traceFixture = `{"resourceSpans":[
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"meshwarden-gateway"}}]},
  "scopeSpans":[{"spans":[
   {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"1111111111111111","parentSpanId":"00f067aa0ba902b7","name":"ingress payments","startTimeUnixNano":"1764806400000000000","endTimeUnixNano":"1764806400012500000","attributes":[{"key":"mw.lane","value":{"stringValue":"canary"}}]},
   {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"2222222222222222","parentSpanId":"1111111111111111","name":"GET /hello","startTimeUnixNano":"1764806400001000000","endTimeUnixNano":"1764806400011000000","attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}]}]}]},
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"payments"}}]},
  "scopeSpans":[{"spans":[
   {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"3333333333333333","parentSpanId":"2222222222222222","name":"payments hello","startTimeUnixNano":"1764806400002000000","endTimeUnixNano":"1764806400009000000"}]}]}]}`

func TestTraceShowAndList(t *testing.T) {
	sink := otlpsink.New(100)
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/v1/traces", "application/json", strings.NewReader(traceFixture))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("post the fixture: %v %v", err, resp)
	}
	resp.Body.Close()
	var b strings.Builder
	for _, args := range [][]string{
		{"trace", "show", "4BF92F3577B34DA6A3CE929D0E0E4736", "--sink", srv.URL},
		{"trace", "list", "--sink", srv.URL + "/"},
	} {
		out, _, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		b.WriteString("$ meshwarden " + strings.Join(args, " ") + "\n" + out + "\n")
	}
	golden(t, "trace.golden", strings.ReplaceAll(b.String(), srv.URL, "http://SINK"))

	t.Setenv("MESHWARDEN_TRACE_SINK", srv.URL)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"trace", "show", "0af7651916cd43dd8448eb211c80319c"}, exitcode.Findings, "no spans of trace 0af7651916cd43dd8448eb211c80319c"},
		{[]string{"trace", "show", "xyz"}, exitcode.Usage, "give the 32 hex digits"},
		{[]string{"trace", "show", "4bf92f3577b34da6a3ce929d0e0e4736", "--sink", "127.0.0.1:1"}, exitcode.Usage, "give a URL such as"},
		{[]string{"trace", "list", "--sink", "http://127.0.0.1:1"}, exitcode.Failure, "is the demo running"},
	} {
		_, _, err := runCLI(t, tc.args...)
		if exitcode.Of(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (exit %d), want exit %d and %q", tc.args, err, exitcode.Of(err), tc.code, tc.want)
		}
	}
}
