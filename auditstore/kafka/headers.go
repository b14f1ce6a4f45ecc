package kafka

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/meshwarden/meshwarden/auditstore/wal"
)

// RecordHeaders are the Kafka headers of one stored record: its seq, its
// event id and, when the event names a trace, the W3C trace context.
func RecordHeaders(seq uint64, id, hash string, payload []byte) []kgo.RecordHeader {
	hs := make([]kgo.RecordHeader, 2, 4)
	hs[0] = kgo.RecordHeader{Key: HeaderSeq, Value: strconv.AppendUint(nil, seq, 10)}
	hs[1] = kgo.RecordHeader{Key: HeaderID, Value: []byte(id)}
	tp, ts := TraceContext(payload, hash)
	if tp != "" {
		hs = append(hs, kgo.RecordHeader{Key: HeaderTraceparent, Value: []byte(tp)})
		if ts != "" {
			hs = append(hs, kgo.RecordHeader{Key: HeaderTracestate, Value: []byte(ts)})
		}
	}
	return hs
}

// TraceContext returns the W3C traceparent and tracestate for a stored
// record (canonical JSON). The audit event carries the request's trace_id;
// if the audit filter also captured the request's traceparent header (and
// it names the same trace), that header and the captured tracestate are
// passed on unchanged. Otherwise the traceparent is built from trace_id
// (a 16-hex B3 id is left-padded with zeros, as W3C says) with the first 16
// hex of the record's hash as parent id and flags 00: it joins the
// request's trace without claiming a recorded span. No valid trace_id: no
// trace context.
func TraceContext(payload []byte, hash string) (traceparent, tracestate string) {
	tid := normTraceID(traceIDField(payload))
	if tid == "" {
		return "", ""
	}
	if bytes.Contains(payload, []byte(`"traceparent":"`)) {
		if e, err := wal.DecodeEvent(payload); err == nil {
			if tp := strings.TrimSpace(e.Headers["traceparent"]); validTraceparent(tp) && tp[3:35] == tid {
				return tp, strings.TrimSpace(e.Headers["tracestate"])
			}
		}
	}
	if len(hash) < 16 || !isHex(hash[:16]) || hash[:16] == "0000000000000000" {
		return "", ""
	}
	return "00-" + tid + "-" + strings.ToLower(hash[:16]) + "-00", ""
}

// traceIDField reads the top-level "trace_id" string of a canonical payload
// without decoding the rest. The first `,"trace_id":"` is the key: inside
// an earlier JSON string every quote is escaped, so the sequence cannot
// occur there, and trace_id precedes the headers map.
func traceIDField(p []byte) string {
	const key = `,"trace_id":"`
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return ""
	}
	rest := p[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return ""
	}
	return string(rest[:j])
}

// normTraceID returns a W3C trace id (32 lowercase hex, not all zero) for
// id, or "".
func normTraceID(id string) string {
	id = strings.ToLower(id)
	if len(id) == 16 {
		id = "0000000000000000" + id
	}
	if len(id) != 32 || !isHex(id) || id == "00000000000000000000000000000000" {
		return ""
	}
	return id
}

// validTraceparent checks version-00 shape: 00-<32 hex>-<16 hex>-<2 hex>,
// with non-zero trace and parent ids.
func validTraceparent(tp string) bool {
	if len(tp) != 55 || tp[:3] != "00-" || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	tid, pid, fl := tp[3:35], tp[36:52], tp[53:55]
	return isLowerHex(tid) && isLowerHex(pid) && isLowerHex(fl) &&
		tid != "00000000000000000000000000000000" && pid != "0000000000000000"
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
