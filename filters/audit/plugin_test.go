//go:build !wasip1

package audit

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

func startNative(t *testing.T, cfg string) (*proxytest.HostEmulator, func()) {
	t.Helper()
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(NewVMContext).
		WithPluginConfiguration([]byte(cfg)).
		WithProperty([]string{"connection", "uri_san_peer_certificate"}, []byte("spiffe://bank.example/ns/edge/sa/gw")))
	if host.StartVM() != proxywasm.OnVMStartStatusOK || host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
		reset()
		t.Fatalf("start failed: %v", host.GetCriticalLogs())
	}
	return host, reset
}

func decodeBatch(t *testing.T, c proxytest.HttpCalloutAttribute) auditevent.Batch {
	t.Helper()
	var b auditevent.Batch
	if err := json.Unmarshal(c.Body, &b); err != nil {
		t.Fatalf("callout body is not a Batch: %v\n%s", err, c.Body)
	}
	hs := map[string]string{}
	for _, h := range c.Headers {
		hs[h[0]] = h[1]
	}
	if c.Upstream != "mw-audit" || hs[":path"] != auditevent.IngestPath || hs[":method"] != "POST" || hs[auditevent.TokenHeader] != "s3cret" {
		t.Errorf("callout to %s with headers %v", c.Upstream, hs)
	}
	return b
}

func TestPluginNativeFailClosed(t *testing.T) {
	tests := []struct {
		name      string
		answer    [][2]string // nil: failed call
		wantReply bool
	}{
		{"ack resumes", [][2]string{{":status", "200"}}, false},
		{"500 refuses", [][2]string{{":status", "500"}}, true},
		{"failed call refuses", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, reset := startNative(t, testConfig)
			defer reset()
			id := host.InitializeHttpContext()
			hdr := [][2]string{{":method", "POST"}, {":path", "/v1/transfers"}, {"x-idempotency-key", "K1"}, {"x-mw-subject", "bob"}}
			if a := host.CallOnRequestHeaders(id, hdr, false); a != proxywasm.ActionPause {
				t.Fatalf("headers action = %v, want pause", a)
			}
			if a := host.CallOnRequestBody(id, []byte(`{"pin":"1`), false); a != proxywasm.ActionPause {
				t.Fatalf("partial body action = %v, want pause", a)
			}
			if a := host.CallOnRequestBody(id, []byte(`234"}`), true); a != proxywasm.ActionPause {
				t.Fatalf("body action = %v, want pause until the ack", a)
			}
			calls := host.GetCalloutAttributesFromContext(id)
			if len(calls) != 1 {
				t.Fatalf("%d callouts, want one intent", len(calls))
			}
			b := decodeBatch(t, calls[0])
			if len(b.Events) != 1 || b.Events[0].Phase != auditevent.PhaseIntent || b.Events[0].Subject != "bob" || b.Events[0].Resource != "transfer/K1" || b.Events[0].BodyDigest == "" {
				t.Errorf("intent batch = %+v", b)
			}
			if calls[0].TimeoutMillis != auditconfig.DefaultFailClosedTimeout {
				t.Errorf("intent timeout = %d", calls[0].TimeoutMillis)
			}
			host.CallOnHttpCallResponse(calls[0].CalloutID, tt.answer, nil, nil)
			resumed, _ := host.GetResumeCount(id)
			reply := host.GetSentLocalResponse(id)
			if tt.wantReply {
				if reply == nil || reply.StatusCode != 503 || resumed != 0 || !strings.Contains(string(reply.Data), "audit_unavailable") {
					t.Fatalf("reply %+v resumed %d; want a 503 and no resume", reply, resumed)
				}
				if n, _ := host.GetCounterMetric(MetricDenied); n != 1 {
					t.Errorf("%s = %d", MetricDenied, n)
				}
			} else if reply != nil || resumed != 1 {
				t.Fatalf("reply %+v resumed %d; want resumed once", reply, resumed)
			}
			if !tt.wantReply {
				host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}}, true)
			}
			host.CompleteHttpContext(id)
			host.Tick()
			calls = host.GetCallouts()
			if len(calls) != 1 {
				t.Fatalf("%d callouts after the tick, want the outcome batch", len(calls))
			}
			out := decodeBatch(t, calls[0]).Events
			wantStatus := 201
			if tt.wantReply {
				wantStatus = 503
			}
			if len(out) != 1 || out[0].Phase != auditevent.PhaseOutcome || out[0].Status != wantStatus {
				t.Errorf("outcome = %+v", out)
			}
		})
	}
}

func TestPluginNativeBufferDropsAndRetries(t *testing.T) {
	tests := []struct {
		name, queue                 string
		enqueued, droppedBeforeTick uint64
	}{
		{"per-instance buffer", "", 1, 2},
		{"shared queue", `, "queueName": "q"`, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := strings.Replace(testConfig, `"source": "node-1"`, `"source": "node-1", "batch": {"maxEvents": 1, "bufferEvents": 1`+tt.queue+`}`, 1)
			host, reset := startNative(t, cfg)
			defer reset()
			for i := 0; i < 3; i++ {
				id := host.InitializeHttpContext()
				host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/login"}}, true)
				host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true)
				host.CompleteHttpContext(id)
			}
			if n, _ := host.GetCounterMetric(MetricEnqueued); n != tt.enqueued {
				t.Fatalf("%s = %d, want %d", MetricEnqueued, n, tt.enqueued)
			}
			if n, _ := host.GetCounterMetric(MetricDropped); n != tt.droppedBeforeTick {
				t.Errorf("%s before the tick = %d, want %d", MetricDropped, n, tt.droppedBeforeTick)
			}
			host.Tick()
			if n, _ := host.GetCounterMetric(MetricDropped); n != 2 {
				t.Errorf("%s = %d, want 2 (buffer of 1)", MetricDropped, n)
			}
			calls := host.GetCallouts()
			if len(calls) != 1 {
				t.Fatalf("%d callouts", len(calls))
			}
			// A failed batch is kept and retried on the next tick.
			host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "503"}}, nil, nil)
			if n, _ := host.GetCounterMetric(MetricSendFailures); n != 1 {
				t.Errorf("%s = %d, want 1", MetricSendFailures, n)
			}
			host.Tick()
			calls = host.GetCallouts()
			if len(calls) != 1 || decodeBatch(t, calls[0]).Events[0].OpType != "LOGIN" {
				t.Fatalf("retry callouts = %+v", calls)
			}
			host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
			if n, _ := host.GetCounterMetric(MetricSent); n != 1 {
				t.Errorf("%s = %d, want 1", MetricSent, n)
			}
		})
	}
}

func TestPluginNativeRefusesBadConfig(t *testing.T) {
	kittest.RefusesConfig(t, NewVMContext, `{"rules":[{"path":{"prefix":"/"}}]}`, "rules[0].opType")
}

func TestPluginNativeBodyBoundAndTrailers(t *testing.T) {
	cfg := strings.Replace(testConfig, `"source": "node-1"`, `"source": "node-1", "maxBodyBytes": 8`, 1)
	tests := []struct {
		name      string
		chunks    []string
		trailers  bool
		truncated bool
		digest    bool
		redacted  string
	}{
		{"over the bound", []string{`{"limit":`, `5000}`}, false, true, false, "body"},
		{"ended by trailers", []string{`{"a":1}`}, true, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, reset := startNative(t, cfg)
			defer reset()
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":method", "PUT"}, {":path", "/v1/accounts/A/limits"}}, false)
			var last proxywasm.Action
			for i, c := range tt.chunks {
				last = host.CallOnRequestBody(id, []byte(c), !tt.trailers && i == len(tt.chunks)-1)
			}
			if tt.trailers {
				if last != proxywasm.ActionPause {
					t.Fatalf("body without end of stream: %v, want pause (buffering)", last)
				}
				last = host.CallOnRequestTrailers(id, [][2]string{{"x-t", "1"}})
			}
			if last != proxywasm.ActionContinue {
				t.Fatalf("last action = %v, want continue", last)
			}
			host.CallOnResponseHeaders(id, [][2]string{{":status", "204"}}, true)
			host.CompleteHttpContext(id)
			host.Tick()
			calls := host.GetCallouts()
			if len(calls) != 1 {
				t.Fatalf("%d callouts", len(calls))
			}
			ev := decodeBatch(t, calls[0]).Events[0]
			if ev.BodyTruncated != tt.truncated || (ev.BodyDigest != "") != tt.digest || strings.Join(ev.Redacted, ",") != tt.redacted || ev.Status != 204 {
				t.Errorf("record = %+v", ev)
			}
		})
	}
}

// TestIgnoresResponseBody: the stream context's promise that lets a native
// host pass the response body on untouched holds.
func TestIgnoresResponseBody(t *testing.T) { kittest.IgnoresResponseBody(t, &httpContext{}) }
