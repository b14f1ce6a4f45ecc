package otlpsink

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one span as the OTLP sink recorded it.
type Span struct {
	TraceID, SpanID, ParentID string
	Name                      string
	Service                   string
	StartNS, EndNS            uint64
	Attrs                     map[string]string
}

// Sink is a minimal OTLP/HTTP trace receiver (POST /v1/traces, protobuf
// or JSON) that keeps spans in memory, so the demo and the e2e tests can show
// and assert one request's trace across hops without an external collector.
// GET lists what it holds, for people: /v1/traces lists the traces (id,
// spans, root name, duration), /v1/traces?trace_id=ID one trace's spans.
type Sink struct {
	mu    sync.Mutex
	spans []Span
	max   int
}

// New returns a sink keeping at most max spans (oldest dropped).
func New(max int) *Sink { return &Sink{max: max} }

// ServeHTTP implements the OTLP/HTTP traces endpoint.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet, http.MethodHead:
		s.serveList(w, r)
		return
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "POST OTLP trace batches to /v1/traces; GET lists the traces", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var spans []Span
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		spans, err = decodeOTLPJSON(body)
	} else {
		spans, err = decodeOTLPProto(body)
	}
	if err != nil {
		http.Error(w, "bad OTLP payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.spans = append(s.spans, spans...)
	if over := len(s.spans) - s.max; s.max > 0 && over > 0 {
		s.spans = append([]Span(nil), s.spans[over:]...)
	}
	s.mu.Unlock()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans returns the spans of one trace (all spans when traceID is empty),
// ordered by start time.
func (s *Sink) Spans(traceID string) []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Span
	for _, sp := range s.spans {
		if traceID == "" || sp.TraceID == traceID {
			out = append(out, sp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartNS < out[j].StartNS })
	return out
}

// TraceSummary is one trace in the sink's GET listing.
type TraceSummary struct {
	TraceID    string  `json:"trace_id"`
	Spans      int     `json:"spans"`
	Root       string  `json:"root"`
	Services   string  `json:"services"`
	StartNS    uint64  `json:"start_unix_nano"`
	DurationMS float64 `json:"duration_ms"`
}

// Traces summarises every trace the sink holds, newest first.
func (s *Sink) Traces() []TraceSummary {
	s.mu.Lock()
	byTrace := map[string][]Span{}
	for _, sp := range s.spans {
		byTrace[sp.TraceID] = append(byTrace[sp.TraceID], sp)
	}
	s.mu.Unlock()
	out := make([]TraceSummary, 0, len(byTrace))
	for id, spans := range byTrace {
		t := TraceSummary{TraceID: id, Spans: len(spans), StartNS: spans[0].StartNS}
		var end uint64
		services := map[string]bool{}
		for _, sp := range spans {
			if sp.ParentID == "" {
				t.Root = sp.Name
			}
			t.StartNS = min(t.StartNS, sp.StartNS)
			end = max(end, sp.EndNS)
			services[sp.Service] = true
		}
		if t.Root == "" {
			t.Root = spans[0].Name + " (root not received)"
		}
		names := slices.Sorted(maps.Keys(services))
		t.Services = strings.Join(names, ",")
		if end > t.StartNS {
			t.DurationMS = float64(end-t.StartNS) / 1e6
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartNS > out[j].StartNS })
	return out
}

func (s *Sink) serveList(w http.ResponseWriter, r *http.Request) {
	var v any
	if id := r.URL.Query().Get("trace_id"); id != "" {
		spans := s.Spans(id)
		if len(spans) == 0 {
			http.Error(w, "no spans of trace "+id+" (GET without trace_id lists the traces held)", http.StatusNotFound)
			return
		}
		v = spans
	} else {
		v = s.Traces()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func decodeOTLPProto(body []byte) ([]Span, error) {
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode protobuf: %w", err)
	}
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range sp.GetAttributes() {
					attrs[kv.GetKey()] = anyString(kv.GetValue().GetStringValue(), kv.GetValue().GetIntValue())
				}
				out = append(out, Span{
					TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()),
					ParentID: hex.EncodeToString(sp.GetParentSpanId()), Name: sp.GetName(), Service: svc,
					StartNS: sp.GetStartTimeUnixNano(), EndNS: sp.GetEndTimeUnixNano(), Attrs: attrs,
				})
			}
		}
	}
	return out, nil
}

func anyString(s string, i int64) string {
	if s != "" {
		return s
	}
	if i != 0 {
		return fmt.Sprint(i)
	}
	return ""
}

// OTLP's JSON encoding writes ids as hex and 64-bit integers as strings or
// numbers, which protojson does not accept; these structs read it directly.
type jsonAnyValue struct {
	StringValue *string     `json:"stringValue"`
	IntValue    json.Number `json:"intValue"`
	BoolValue   *bool       `json:"boolValue"`
}

type jsonKV struct {
	Key   string       `json:"key"`
	Value jsonAnyValue `json:"value"`
}

type jsonRequest struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []jsonKV `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Spans []struct {
				TraceID      string      `json:"traceId"`
				SpanID       string      `json:"spanId"`
				ParentSpanID string      `json:"parentSpanId"`
				Name         string      `json:"name"`
				Start        json.Number `json:"startTimeUnixNano"`
				End          json.Number `json:"endTimeUnixNano"`
				Attributes   []jsonKV    `json:"attributes"`
			} `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

func (v jsonAnyValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != "":
		return v.IntValue.String()
	case v.BoolValue != nil:
		return fmt.Sprint(*v.BoolValue)
	}
	return ""
}

func decodeOTLPJSON(body []byte) ([]Span, error) {
	var req jsonRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	var out []Span
	for _, rs := range req.ResourceSpans {
		svc := ""
		for _, kv := range rs.Resource.Attributes {
			if kv.Key == "service.name" {
				svc = kv.Value.String()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				attrs := map[string]string{}
				for _, kv := range sp.Attributes {
					attrs[kv.Key] = kv.Value.String()
				}
				start, _ := parseUint(sp.Start)
				end, _ := parseUint(sp.End)
				out = append(out, Span{
					TraceID: strings.ToLower(sp.TraceID), SpanID: strings.ToLower(sp.SpanID),
					ParentID: strings.ToLower(sp.ParentSpanID), Name: sp.Name, Service: svc,
					StartNS: start, EndNS: end, Attrs: attrs,
				})
			}
		}
	}
	return out, nil
}

func parseUint(n json.Number) (uint64, error) {
	var v uint64
	_, err := fmt.Sscan(string(n), &v)
	return v, err
}
