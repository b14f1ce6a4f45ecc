// Package trace is Meshwarden's trace-propagation filter. It reads W3C
// traceparent/tracestate/baggage (and B3 single or multi headers), starts a
// new trace when none valid arrives, gives each hop its own child span id,
// samples parent-based with a ratio for new traces, and exports one span per
// request as OTLP/HTTP JSON batches.
//
// Its configuration is the pure package filters/trace/traceconfig; this
// package is the engine (plain Go, tested natively) and the proxy-wasm plugin.
package trace

import (
	"encoding/binary"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/meshwarden/meshwarden/filters/kit"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

// Request is the view of one request's headers the engine needs (lowercase
// names).
type Request interface {
	Header(name string) (string, bool)
	// Values returns every non-empty line of a header, in order.
	Values(name string) []string
	SetHeader(name, value string)
	RemoveHeader(name string)
}

// Engine applies a validated traceconfig.Config. It is immutable and safe to share.
type Engine struct {
	cfg       *traceconfig.Config
	threshold uint64 // sampled when the trace id's low 63 bits are below it
}

// NewEngine compiles cfg, which must have passed Validate.
func NewEngine(cfg *traceconfig.Config) *Engine {
	e := &Engine{cfg: cfg}
	r := 1.0
	if cfg.Sampling.Ratio != nil {
		r = *cfg.Sampling.Ratio
	}
	switch {
	case r >= 1:
		e.threshold = math.MaxUint64
	case r <= 0:
		e.threshold = 0
	default:
		e.threshold = uint64(r * (1 << 63))
	}
	return e
}

// Config returns the engine's configuration.
func (e *Engine) Config() *traceconfig.Config { return e.cfg }

// Hop is the trace context of one request through this proxy.
type Hop struct {
	// Span is this hop's span: the trace id, this hop's new span id and the
	// sampling decision.
	Span tracectx.SpanContext
	// Parent is the caller's span id (zero for a new trace).
	Parent tracectx.SpanID
	// From says where the parent came from: "traceparent", "b3", or "" for
	// a new trace.
	From string
}

// Start extracts the incoming context, decides sampling, makes this hop's
// child span and writes the outgoing traceparent (and tracestate, baggage
// and, if configured, b3) to the request. rnd supplies randomness
// (a stream seeded through guestcrypto.Read: WASI random_get in the guest).
func (e *Engine) Start(req Request, rnd io.Reader) (Hop, error) {
	var h Hop
	parent, from := e.extract(req)
	if from != "" {
		h.Span.TraceID, h.Parent, h.From = parent.TraceID, parent.SpanID, from
	} else {
		tid, err := tracectx.NewTraceID(rnd)
		if err != nil {
			return h, err
		}
		h.Span.TraceID = tid
	}
	sid, err := tracectx.NewSpanID(rnd)
	if err != nil {
		return h, err
	}
	h.Span.SpanID = sid
	if from != "" && !e.cfg.Sampling.IgnoreParent {
		h.Span.Flags = parent.Flags & tracectx.FlagSampled
	} else if e.sampleRoot(h.Span.TraceID) {
		h.Span.Flags = tracectx.FlagSampled
	}

	var buf [64]byte
	kit.SetHeaderBytes(req, tracectx.TraceparentHeader, tracectx.AppendTraceparent(buf[:0], h.Span))
	// tracestate is meaningful only with a valid traceparent from the
	// caller; several header lines are one list, sent on as one line.
	if ts := req.Values(tracectx.TracestateHeader); len(ts) > 0 {
		if from != "traceparent" {
			req.RemoveHeader(tracectx.TracestateHeader)
		} else if st, err := tracectx.ParseTracestate(ts...); err != nil || len(st.Members) == 0 {
			req.RemoveHeader(tracectx.TracestateHeader)
		} else if out := st.String(); len(ts) > 1 || out != ts[0] {
			req.SetHeader(tracectx.TracestateHeader, out)
		}
	}
	if bg, ok := req.Header(tracectx.BaggageHeader); ok && !tracectx.BaggageIsClean(bg) {
		if p := tracectx.ParseBaggage(bg); p.Dropped > 0 {
			if p.Len() == 0 {
				req.RemoveHeader(tracectx.BaggageHeader)
			} else {
				req.SetHeader(tracectx.BaggageHeader, p.String())
			}
		}
	}
	if e.cfg.PropagateB3 {
		req.SetHeader(tracectx.B3Header, string(tracectx.AppendB3Single(buf[:0], h.Span)))
		for _, n := range [...]string{tracectx.B3TraceIDHeader, tracectx.B3SpanIDHeader, tracectx.B3ParentIDHeader, tracectx.B3SampledHeader, tracectx.B3FlagsHeader} {
			req.RemoveHeader(n)
		}
	}
	return h, nil
}

func (e *Engine) extract(req Request) (tracectx.SpanContext, string) {
	// Two traceparent lines are no parent at all: the trace restarts (W3C
	// Trace Context, and its test suite).
	if tps := req.Values(tracectx.TraceparentHeader); len(tps) == 1 {
		if sc, err := tracectx.ParseTraceparent(tps[0]); err == nil {
			return sc, "traceparent"
		}
	} else if len(tps) > 1 {
		return tracectx.SpanContext{}, ""
	}
	if e.cfg.AcceptB3 == nil || *e.cfg.AcceptB3 {
		if s, ok := req.Header(tracectx.B3Header); ok {
			if b, err := tracectx.ParseB3Single(s); err == nil {
				return b.SpanContext, "b3"
			}
		}
		get := func(n string) string { v, _ := req.Header(n); return v }
		if b, err := tracectx.ParseB3Multi(get); err == nil {
			return b.SpanContext, "b3"
		}
	}
	return tracectx.SpanContext{}, ""
}

// sampleRoot is the ratio sampler, deterministic in the trace id (as
// OpenTelemetry's TraceIDRatioBased): every proxy that applies the same
// ratio to the same trace decides alike.
func (e *Engine) sampleRoot(t tracectx.TraceID) bool {
	if e.threshold == math.MaxUint64 {
		return true
	}
	return binary.BigEndian.Uint64(t[8:])>>1 < e.threshold
}

// Span is a finished span, ready to encode.
type Span struct {
	TraceID  tracectx.TraceID
	SpanID   tracectx.SpanID
	Parent   tracectx.SpanID
	Name     string
	StartNS  int64
	EndNS    int64
	Method   string
	Path     string
	Route    string
	Status   int
	Lane     string
	Peer     string
	PeerAddr string
}

// AppendSpanJSON appends the OTLP/JSON encoding of one span (an element of
// scopeSpans[].spans) to b. Attribute names follow the OpenTelemetry HTTP
// semantic conventions; the lane is mw.lane. (Each attribute's constant
// prefix is one literal: in the wasm guest every append is a call.)
func (e *Engine) AppendSpanJSON(b []byte, s *Span) []byte {
	b = slices.Grow(b, 512)
	b = append(b, `{"traceId":"`...)
	b = appendHex(b, s.TraceID[:])
	b = append(b, `","spanId":"`...)
	b = appendHex(b, s.SpanID[:])
	if s.Parent.IsValid() {
		b = append(b, `","parentSpanId":"`...)
		b = appendHex(b, s.Parent[:])
	}
	b = append(b, `","name":`...)
	b = kit.AppendJSONString(b, s.Name)
	kind := 2 // SPAN_KIND_SERVER
	if e.cfg.SpanKind == "client" {
		kind = 3
	}
	b = append(b, `,"kind":`...)
	b = append(b, byte('0'+kind))
	b = append(b, `,"startTimeUnixNano":"`...)
	b = strconv.AppendInt(b, s.StartNS, 10)
	b = append(b, `","endTimeUnixNano":"`...)
	b = strconv.AppendInt(b, s.EndNS, 10)
	b = append(b, `","attributes":[{"key":"http.request.method","value":{"stringValue":`...)
	b = kit.AppendJSONString(b, s.Method)
	b = append(b, `}},{"key":"url.path","value":{"stringValue":`...)
	b = kit.AppendJSONString(b, s.Path)
	b = append(b, "}}"...)
	if s.Route != "" {
		b = append(b, `,{"key":"http.route","value":{"stringValue":`...)
		b = kit.AppendJSONString(b, s.Route)
		b = append(b, "}}"...)
	}
	if s.Status != 0 {
		b = append(b, `,{"key":"http.response.status_code","value":{"intValue":"`...)
		b = strconv.AppendInt(b, int64(s.Status), 10)
		b = append(b, `"}}`...)
	}
	if s.Lane != "" {
		b = append(b, `,{"key":"mw.lane","value":{"stringValue":`...)
		b = kit.AppendJSONString(b, s.Lane)
		b = append(b, "}}"...)
	}
	if s.Peer != "" {
		b = append(b, `,{"key":"mw.peer.identity","value":{"stringValue":`...)
		b = kit.AppendJSONString(b, s.Peer)
		b = append(b, "}}"...)
	}
	if s.PeerAddr != "" {
		b = append(b, `,{"key":"client.address","value":{"stringValue":`...)
		b = kit.AppendJSONString(b, s.PeerAddr)
		b = append(b, "}}"...)
	}
	// A server span is an error on 5xx; a client span on 4xx too; no
	// response at all is an error.
	if s.Status == 0 || s.Status >= 500 || (kind == 3 && s.Status >= 400) {
		return append(b, `],"status":{"code":2}}`...)
	}
	return append(b, `],"status":{"code":0}}`...)
}

// AppendExport appends an OTLP/HTTP JSON ExportTraceServiceRequest holding
// the already encoded spans.
func (e *Engine) AppendExport(b []byte, spans [][]byte) []byte {
	b = append(b, `{"resourceSpans":[{"resource":{"attributes":[`...)
	b = appendStrAttr(b, "service.name", e.cfg.ServiceName, true)
	b = append(b, `]},"scopeSpans":[{"scope":{"name":"meshwarden/filters/trace"},"spans":[`...)
	for i, s := range spans {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s...)
	}
	return append(b, "]}]}]}"...)
}

func appendStrAttr(b []byte, k, v string, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, `{"key":`...)
	b = kit.AppendJSONString(b, k)
	b = append(b, `,"value":{"stringValue":`...)
	b = kit.AppendJSONString(b, v)
	return append(b, "}}"...)
}

const hexDigits = "0123456789abcdef"

func appendHex(b, src []byte) []byte {
	n := len(b)
	b = slices.Grow(b, 2*len(src))[:n+2*len(src)]
	for i, c := range src {
		b[n+2*i], b[n+2*i+1] = hexDigits[c>>4], hexDigits[c&0xf]
	}
	return b
}
