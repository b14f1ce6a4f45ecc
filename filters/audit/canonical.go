package audit

import (
	"sort"
	"strconv"

	"github.com/meshwarden/meshwarden/filters/kit"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// appendCanonical is auditevent.Event.AppendCanonical, byte for byte (pinned by
// TestAppendCanonicalSameBytes), with kit.AppendJSONString's fast path: in the
// wasm guest the record encoding dominated the stream's last callback.
func appendCanonical(b []byte, e *auditevent.Event) []byte {
	b = append(b, `{"id":`...)
	b = kit.AppendJSONString(b, e.ID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"phase":`...)
	b = kit.AppendJSONString(b, string(e.Phase))
	b = append(b, `,"level":`...)
	b = kit.AppendJSONString(b, string(e.Level))
	b = append(b, `,"op_type":`...)
	b = kit.AppendJSONString(b, e.OpType)
	b = append(b, `,"subject":`...)
	b = kit.AppendJSONString(b, e.Subject)
	b = append(b, `,"resource":`...)
	b = kit.AppendJSONString(b, e.Resource)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, e.Timestamp, 10)
	b = append(b, `,"trace_id":`...)
	b = kit.AppendJSONString(b, e.TraceID)
	b = append(b, `,"dye":`...)
	b = kit.AppendJSONString(b, e.Dye)
	b = append(b, `,"tenant":`...)
	b = kit.AppendJSONString(b, e.Tenant)
	b = append(b, `,"method":`...)
	b = kit.AppendJSONString(b, e.Method)
	b = append(b, `,"path":`...)
	b = kit.AppendJSONString(b, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"latency":`...)
	b = strconv.AppendInt(b, e.LatencyNS, 10)
	b = append(b, `,"redacted":[`...)
	for i, r := range e.Redacted {
		if i > 0 {
			b = append(b, ',')
		}
		b = kit.AppendJSONString(b, r)
	}
	b = append(b, `],"headers":{`...)
	if len(e.Headers) > 0 {
		keys := make([]string, 0, len(e.Headers))
		for k := range e.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = kit.AppendJSONString(b, k)
			b = append(b, ':')
			b = kit.AppendJSONString(b, e.Headers[k])
		}
	}
	b = append(b, `},"body_digest":`...)
	b = kit.AppendJSONString(b, e.BodyDigest)
	b = append(b, `,"body_truncated":`...)
	b = strconv.AppendBool(b, e.BodyTruncated)
	b = append(b, `,"source":`...)
	b = kit.AppendJSONString(b, e.Source)
	b = append(b, `,"prev_hash":`...)
	b = kit.AppendJSONString(b, e.PrevHash)
	b = e.AppendCompliance(b) // rare, short: the shared encoder is fast enough
	return append(b, '}')
}
