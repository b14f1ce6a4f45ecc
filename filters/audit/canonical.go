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
	b = kit.AppendStr(b, `{"id":`)
	b = kit.AppendJSONString(b, e.ID)
	b = kit.AppendStr(b, `,"seq":`)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = kit.AppendStr(b, `,"phase":`)
	b = kit.AppendJSONString(b, string(e.Phase))
	b = kit.AppendStr(b, `,"level":`)
	b = kit.AppendJSONString(b, string(e.Level))
	b = kit.AppendStr(b, `,"op_type":`)
	b = kit.AppendJSONString(b, e.OpType)
	b = kit.AppendStr(b, `,"subject":`)
	b = kit.AppendJSONString(b, e.Subject)
	b = kit.AppendStr(b, `,"resource":`)
	b = kit.AppendJSONString(b, e.Resource)
	b = kit.AppendStr(b, `,"timestamp":`)
	b = kit.AppendInt(b, e.Timestamp)
	b = kit.AppendStr(b, `,"trace_id":`)
	b = kit.AppendJSONString(b, e.TraceID)
	b = kit.AppendStr(b, `,"dye":`)
	b = kit.AppendJSONString(b, e.Dye)
	b = kit.AppendStr(b, `,"tenant":`)
	b = kit.AppendJSONString(b, e.Tenant)
	b = kit.AppendStr(b, `,"method":`)
	b = kit.AppendJSONString(b, e.Method)
	b = kit.AppendStr(b, `,"path":`)
	b = kit.AppendJSONString(b, e.Path)
	b = kit.AppendStr(b, `,"status":`)
	b = kit.AppendInt(b, int64(e.Status))
	b = kit.AppendStr(b, `,"latency":`)
	b = kit.AppendInt(b, e.LatencyNS)
	b = kit.AppendStr(b, `,"redacted":[`)
	for i, r := range e.Redacted {
		if i > 0 {
			b = append(b, ',')
		}
		b = kit.AppendJSONString(b, r)
	}
	b = kit.AppendStr(b, `],"headers":{`)
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
	b = kit.AppendStr(b, `},"body_digest":`)
	b = kit.AppendJSONString(b, e.BodyDigest)
	b = kit.AppendStr(b, `,"body_truncated":`)
	b = strconv.AppendBool(b, e.BodyTruncated)
	b = kit.AppendStr(b, `,"source":`)
	b = kit.AppendJSONString(b, e.Source)
	b = kit.AppendStr(b, `,"prev_hash":`)
	b = kit.AppendJSONString(b, e.PrevHash)
	b = e.AppendCompliance(b) // rare, short: the shared encoder is fast enough
	return append(b, '}')
}
