package kittest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
)

// The stories the wazero runs (filters/*/host_test.go), the V8 runs
// (filters/internal/v8host) and the native/wasm differential tests
// (gateway/nativefilters) tell alike: one collector, one set of checks.

// AuditSink is an audit collector (cluster mw-audit): it keeps every record
// of the batches it is sent and acknowledges them.
type AuditSink struct {
	// Refuse, while set, makes the collector answer 500 to every batch
	// and keep none (a collector that is down).
	Refuse atomic.Bool

	mu     sync.Mutex
	events []auditevent.Event
}

func (a *AuditSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.Refuse.Load() {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	var b auditevent.Batch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.events = append(a.events, b.Events...)
	a.mu.Unlock()
	_ = json.NewEncoder(w).Encode(auditevent.Ack{Accepted: len(b.Events)})
}

// Events returns a copy of the records received so far.
func (a *AuditSink) Events() []auditevent.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events)
}

// CheckTransferIntent checks the intent record of the transfer story: a POST
// /v1/transfers by alice, idempotency key IK-9, traceparent of trace
// 4bf92f3577b34da6a3ce929d0e0e4736, dye canary, x-api-key and the card
// number and pin redacted, through a plugin whose source is gw-test-1.
// digest is the expected body digest ("sha256:<hex>").
func CheckTransferIntent(t testing.TB, intent auditevent.Event, digest string) {
	t.Helper()
	checks := map[string][2]string{
		"op_type":   {intent.OpType, "FUND_TRANSFER"},
		"level":     {string(intent.Level), "critical"},
		"subject":   {intent.Subject, "alice"},
		"resource":  {intent.Resource, "transfer/IK-9"},
		"trace_id":  {intent.TraceID, "4bf92f3577b34da6a3ce929d0e0e4736"},
		"dye":       {intent.Dye, "canary"},
		"digest":    {intent.BodyDigest, digest},
		"redacted":  {strings.Join(intent.Redacted, ","), "header:x-api-key,body:card.number,body:pin"},
		"headers":   {fmt.Sprint(intent.Headers), "map[user-agent:bank-app]"},
		"source":    {intent.Source, "gw-test-1"},
		"id suffix": {intent.ID[strings.LastIndexByte(intent.ID, '-')+1:], "intent"},
		"id trace":  {intent.ID[:min(32, len(intent.ID))], "4bf92f3577b34da6a3ce929d0e0e4736"},
	}
	for k, v := range checks {
		if v[0] != v[1] {
			t.Errorf("intent %s = %q, want %q", k, v[0], v[1])
		}
	}
}

// Traceparent is the incoming W3C traceparent of the stories: trace
// 4bf92f3577b34da6a3ce929d0e0e4736, parent span 00f067aa0ba902b7, sampled.
const Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TraceStory is one way a request comes to the trace filter: with Hdr, the
// span continues the incoming trace (SameTrace) or starts one.
type TraceStory struct {
	Name      string
	Hdr       []string
	SameTrace bool
}

// TraceStories are the incoming trace contexts the trace filter's hosts are
// tested with: W3C and B3 continued, none and an invalid one replaced.
var TraceStories = []TraceStory{
	{"continues a W3C trace", []string{"traceparent", Traceparent, "tracestate", "rojo=1"}, true},
	{"continues a B3 trace", []string{"b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"}, true},
	{"starts a trace", nil, false},
	{"replaces an invalid traceparent", []string{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, false},
}

// CheckPaymentsSpan checks the server span of the traced payment story: a
// POST /v1/transfers on route payments answered 201, lane canary, from
// spiffe://bank.example/ns/web/sa/app at 10.0.0.7:5555, exported as service
// payments-gateway; with sameTrace, a child of span 00f067aa0ba902b7.
func CheckPaymentsSpan(t testing.TB, span otlpsink.Span, sameTrace bool) {
	t.Helper()
	if span.Service != "payments-gateway" {
		t.Errorf("span %+v", span)
	}
	if sameTrace && span.ParentID != "00f067aa0ba902b7" {
		t.Errorf("parent = %q", span.ParentID)
	}
	for k, v := range map[string]string{"http.request.method": "POST", "url.path": "/v1/transfers", "http.route": "payments",
		"http.response.status_code": "201", "mw.lane": "canary", "mw.peer.identity": "spiffe://bank.example/ns/web/sa/app", "client.address": "10.0.0.7:5555"} {
		if span.Attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, span.Attrs[k], v)
		}
	}
}
