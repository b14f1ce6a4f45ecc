//go:build !wasip1

package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// guests builds ./wasm once per test binary and compiles it once.
var guests kittest.Guests

func TestMain(m *testing.M) { guests.Main(m) }

// receiver is a test collector speaking the wire format: it decodes
// audit.Batch, checks the token and answers per its mode.
type receiver struct {
	mu     sync.Mutex
	events []auditevent.Event
	status int           // answer status (200 by default)
	delay  time.Duration // before answering
	token  string
	bad    []string
	srv    *httptest.Server
}

func newReceiver(t testing.TB, token string) *receiver {
	r := &receiver{status: 200, token: token}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		status, delay := r.status, r.delay
		r.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-req.Context().Done():
				return
			}
		}
		var b auditevent.Batch
		err := json.NewDecoder(req.Body).Decode(&b)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case req.URL.Path != auditevent.IngestPath || req.Method != http.MethodPost:
			r.bad = append(r.bad, "wrong endpoint "+req.Method+" "+req.URL.Path)
		case req.Header.Get(auditevent.TokenHeader) != r.token:
			r.bad = append(r.bad, "wrong token "+req.Header.Get(auditevent.TokenHeader))
		case err != nil:
			r.bad = append(r.bad, "bad batch: "+err.Error())
		}
		for i := range b.Events {
			if err := b.Events[i].Validate(); err != nil {
				r.bad = append(r.bad, err.Error())
			}
		}
		if status != 200 {
			w.WriteHeader(status)
			return
		}
		r.events = append(r.events, b.Events...)
		_ = json.NewEncoder(w).Encode(auditevent.Ack{Accepted: len(b.Events)})
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) set(status int, delay time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.delay = status, delay
}

// waitFor polls until n events with phase arrived, or fails after 10s.
func (r *receiver) waitFor(t testing.TB, phase auditevent.Phase, n int) []auditevent.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		var got []auditevent.Event
		for _, e := range r.events {
			if e.Phase == phase {
				got = append(got, e)
			}
		}
		bad := append([]string(nil), r.bad...)
		r.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("receiver saw bad requests: %v", bad)
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d %s records after 10s", len(got), phase)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exampleConfig loads testdata/example.json (the README's example) with the
// timings shortened for tests.
func exampleConfig(t testing.TB, failClosedMs int) []byte {
	t.Helper()
	return testdataConfig(t, "testdata/example.json", failClosedMs)
}

func hostPlugin(t testing.TB, config []byte, rcv *receiver, logs *kittest.LogSink) (*wasmhost.Plugin, error) {
	t.Helper()
	rt, mod := guests.Compiled(t, "./wasm")
	cfg := wasmhost.PluginConfig{Name: "audit", Configuration: config,
		Properties: map[string][]byte{"node.id": []byte("gw-test-1")}}
	if rcv != nil {
		cfg.HTTPCaller = &wasmhost.NetHTTPCaller{Clusters: map[string]string{"mw-audit": rcv.srv.URL}}
	}
	return kittest.Start(t, rt, mod, cfg, logs)
}

// hostStream starts the plugin with config, sending to rcv, and opens one
// stream with info; either failing ends the test.
func hostStream(t testing.TB, config []byte, rcv *receiver, info wasmhost.StreamInfo) *wasmhost.Stream {
	t.Helper()
	p, err := hostPlugin(t, config, rcv, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.NewStream(context.Background(), info)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testdataConfig is the configuration of a testdata file, parsed and written
// back with a 20 ms flush interval so that records leave quickly and, when
// failClosedMs > 0, that fail-closed timeout.
func testdataConfig(t testing.TB, path string, failClosedMs int) []byte {
	t.Helper()
	cfg, err := auditconfig.ParseConfig(kittest.ReadFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Batch.FlushIntervalMs = 20
	if failClosedMs > 0 {
		cfg.FailClosedTimeoutMs = failClosedMs
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const transferBody = `{"amount":100,"currency":"EUR","card":{"number":"4111111111111111"},"pin":"1234"}`

func TestHostFailClosedAcked(t *testing.T) {
	rcv := newReceiver(t, "change-me")
	s := hostStream(t, exampleConfig(t, 2000), rcv, wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/edge/sa/gw"})
	h := wasmhost.NewHeaders(":method", "POST", ":path", "/v1/transfers", "idempotency-key", "IK-9", "x-mw-subject", "alice",
		"x-api-key", "secret", "user-agent", "bank-app", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "x-mw-dye", "canary")
	if res := s.OnRequestHeaders(h, false); res.Action != wasmhost.Buffer {
		t.Fatalf("headers: %v (%v), want buffer until the body is seen", res.Action, res.Err)
	}
	res := s.OnRequestBody([]byte(transferBody), true)
	if res.Action != wasmhost.Continue || string(res.Body) != transferBody {
		t.Fatalf("body: %v %q (%v), want continue with the body unchanged", res.Action, res.Body, res.Err)
	}
	// The intent was acknowledged before the request went on.
	intent := rcv.waitFor(t, auditevent.PhaseIntent, 1)[0]
	sum := sha256.Sum256([]byte(strings.NewReplacer(`"4111111111111111"`, audit.Redacted, `"1234"`, audit.Redacted).Replace(transferBody)))
	kittest.CheckTransferIntent(t, intent, "sha256:"+hex.EncodeToString(sum[:]))
	if r := s.OnResponseHeaders(wasmhost.NewHeaders(":status", "201"), true); r.Action != wasmhost.Continue {
		t.Fatalf("response: %v", r.Action)
	}
	s.Close()
	out := rcv.waitFor(t, auditevent.PhaseOutcome, 1)[0]
	if out.Status != 201 || out.LatencyNS <= 0 || out.BodyDigest != intent.BodyDigest || out.Timestamp < intent.Timestamp {
		t.Errorf("outcome = %+v", out)
	}
}

func TestHostFailClosedRefused(t *testing.T) {
	tests := []struct {
		name   string
		status int
		delay  time.Duration
	}{
		{"collector answers 500", 500, 0},
		{"collector too slow", 200, 700 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, "change-me")
			rcv.set(tt.status, tt.delay)
			s := hostStream(t, exampleConfig(t, 200), rcv, wasmhost.StreamInfo{})
			defer s.Close()
			res := s.OnRequestHeaders(wasmhost.NewHeaders(":method", "POST", ":path", "/v1/transfers"), true)
			if res.Action != wasmhost.Reply || res.Reply == nil || res.Reply.Status != 503 {
				t.Fatalf("result = %v %+v, want a 503 reply and nothing forwarded", res.Action, res.Reply)
			}
			var body map[string]string
			if err := json.Unmarshal(res.Reply.Body, &body); err != nil || body["error"] != "audit_unavailable" || body["op_type"] != "FUND_TRANSFER" || !strings.Contains(body["message"], "not forwarded") {
				t.Errorf("503 body = %s (%v)", res.Reply.Body, err)
			}
		})
	}
}

func TestHostOutcomeBatched(t *testing.T) {
	rcv := newReceiver(t, "change-me")
	p, err := hostPlugin(t, exampleConfig(t, 2000), rcv, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := 0; i < n; i++ {
		s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/web/sa/app"})
		if err != nil {
			t.Fatal(err)
		}
		h := wasmhost.NewHeaders(":method", "PUT", ":path", fmt.Sprintf("/v1/accounts/ACC-%d/limits?x=1", i), "x-mw-subject", "mallory")
		if r := s.OnRequestHeaders(h, false); r.Action != wasmhost.Buffer {
			t.Fatalf("headers: %v", r.Action)
		}
		if r := s.OnRequestBody([]byte(`{"limit":`), false); r.Action != wasmhost.Buffer {
			t.Fatalf("first chunk: %v", r.Action)
		}
		if r := s.OnRequestBody([]byte(`500,"pin":"0000"}`), true); r.Action != wasmhost.Continue || string(r.Body) != `{"limit":500,"pin":"0000"}` {
			t.Fatalf("last chunk: %v %q", r.Action, r.Body)
		}
		s.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), true)
		s.Close()
	}
	// Unaudited requests produce nothing.
	s, _ := p.NewStream(context.Background(), wasmhost.StreamInfo{})
	s.OnRequestHeaders(wasmhost.NewHeaders(":method", "GET", ":path", "/v1/accounts/ACC-1/limits"), true)
	s.Close()
	// Delivery is at least once (a batch whose answer is lost is sent
	// again; the collector dedupes by id): count distinct records. The
	// shared queue belongs to the host, so records that earlier tests'
	// plugins left queued are delivered too (as after a config reload):
	// look at this test's operation only.
	var got []auditevent.Event
	ids := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(ids) < n && time.Now().Before(deadline) {
		for _, e := range rcv.waitFor(t, auditevent.PhaseOutcome, 1) {
			if e.OpType == "LIMIT_CHANGE" && !ids[e.ID] {
				ids[e.ID] = true
				got = append(got, e)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(ids) != n {
		t.Fatalf("%d distinct outcomes, want %d", len(ids), n)
	}
	for _, e := range got {
		if e.OpType != "LIMIT_CHANGE" || e.Subject != "spiffe://bank.example/ns/web/sa/app" || !strings.HasPrefix(e.Resource, "account/ACC-") || e.Status != 200 || e.Path != strings.Split(e.Path, "?")[0] {
			t.Errorf("outcome %+v", e)
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, e := range rcv.events {
		if e.Phase == auditevent.PhaseIntent {
			t.Errorf("non-fail-closed rule sent an intent record: %+v", e)
		}
	}
}

func TestHostRefusesBadConfig(t *testing.T) {
	kittest.Refuses(t, "rules[0].level", func(logs *kittest.LogSink) error {
		_, err := hostPlugin(t, []byte(`{"rules":[{"path":{"prefix":"/"},"opType":"X","level":"loud"}]}`), nil, logs)
		return err
	})
}

// TestHostFullBatchLeavesBeforeTheTick: a batch is sent as soon as it is
// full, by the request that fills it, on behalf of the plugin — not at the
// next tick (10 minutes here), and not cancelled when that request's
// stream ends a moment later. Between ticks the buffer would otherwise
// fill at high rates and drop records. The seventh record, in no full
// batch, waits for the tick.
func TestHostFullBatchLeavesBeforeTheTick(t *testing.T) {
	cfg, err := auditconfig.ParseConfig(kittest.ReadFile(t, "testdata/example.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Batch.FlushIntervalMs, cfg.Batch.MaxEvents = 600000, 3
	conf, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t, "change-me")
	p, err := hostPlugin(t, conf, rcv, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{})
		if err != nil {
			t.Fatal(err)
		}
		s.OnRequestHeaders(wasmhost.NewHeaders(":method", "PUT", ":path", fmt.Sprintf("/v1/accounts/ACC-%d/limits", i)), true)
		s.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), true)
		s.Close()
	}
	if got := rcv.waitFor(t, auditevent.PhaseOutcome, 6); len(got) != 6 {
		t.Fatalf("%d records arrived, want the two full batches (6)", len(got))
	}
	time.Sleep(200 * time.Millisecond)
	rcv.mu.Lock()
	n := len(rcv.events)
	rcv.mu.Unlock()
	if n != 6 {
		t.Fatalf("%d records arrived before the tick, want 6: the seventh is in no full batch", n)
	}
}
