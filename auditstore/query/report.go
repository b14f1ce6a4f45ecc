package query

import (
	"context"
	"sort"
	"strings"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// NoTag is the report row of records that carry no compliance tag.
const NoTag = "(untagged)"

// Report is the compliance summary of a period: per tag, what was
// recorded, masked, flagged and blocked. A record with several tags counts
// under each.
type Report struct {
	From string      `json:"from,omitempty"` // RFC 3339, empty: the first record
	To   string      `json:"to,omitempty"`   // RFC 3339, empty: the last record
	Tags []TagReport `json:"tags"`
}

// TagReport is one tag's row.
type TagReport struct {
	Tag string `json:"tag"`
	// Records is every record carrying the tag (intent and outcome).
	Records int `json:"records"`
	// Requests counts outcome records: one per request.
	Requests int `json:"requests"`
	// MaskedFields counts values the filter replaced in records: field
	// actions (Fields) plus detections under mask-in-audit.
	MaskedFields int `json:"masked_fields"`
	// ByAction splits MaskedFields' field actions: mask, hash, redact.
	ByAction map[string]int `json:"by_action,omitempty"`
	// Detections counts PII detections (scan limits apart), per detector
	// in ByDetector.
	Detections int            `json:"detections"`
	ByDetector map[string]int `json:"by_detector,omitempty"`
	// ScanLimited counts requests whose body was longer than the scan.
	ScanLimited int `json:"scan_limited"`
	// Blocked counts refused requests, per reason in ByReason.
	Blocked  int            `json:"blocked"`
	ByReason map[string]int `json:"by_reason,omitempty"`
	// KeyIDs lists the HMAC key ids the records name (what an auditor
	// needs to re-derive the hashes).
	KeyIDs []string `json:"key_ids,omitempty"`
}

// BuildReport scans dir for records matching f and summarises them per
// tag (rows sorted by tag, NoTag last).
func BuildReport(ctx context.Context, dir string, f Filter) (*Report, error) {
	rows := map[string]*TagReport{}
	keys := map[string]map[string]bool{}
	_, err := Scan(ctx, dir, f, func(e *auditevent.Event, _ []byte) error {
		tags := e.Tags
		if len(tags) == 0 {
			tags = []string{NoTag}
		}
		for _, t := range tags {
			r := rows[t]
			if r == nil {
				r = &TagReport{Tag: t}
				rows[t] = r
				keys[t] = map[string]bool{}
			}
			r.add(e)
			if e.KeyID != "" {
				keys[t][e.KeyID] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep := &Report{Tags: []TagReport{}}
	if !f.From.IsZero() {
		rep.From = f.From.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	if !f.To.IsZero() {
		rep.To = f.To.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	for t, r := range rows {
		for k := range keys[t] {
			r.KeyIDs = append(r.KeyIDs, k)
		}
		sort.Strings(r.KeyIDs)
		rep.Tags = append(rep.Tags, *r)
	}
	sort.Slice(rep.Tags, func(i, j int) bool {
		a, b := rep.Tags[i].Tag, rep.Tags[j].Tag
		if (a == NoTag) != (b == NoTag) {
			return b == NoTag
		}
		return a < b
	})
	return rep, nil
}

func (r *TagReport) add(e *auditevent.Event) {
	r.Records++
	outcome := e.Phase == auditevent.PhaseOutcome
	if outcome {
		r.Requests++
	}
	// A request's intent and outcome carry the same fields and detections:
	// count them once, on the outcome (the one record every request has).
	if !outcome {
		return
	}
	for _, v := range e.Fields {
		r.MaskedFields++
		inc(&r.ByAction, actionOf(v))
	}
	for _, p := range e.PII {
		name, _, _ := strings.Cut(p, "@")
		if name == "scan-limit" {
			r.ScanLimited++
			continue
		}
		r.Detections++
		inc(&r.ByDetector, name)
		if e.PIIAction == "mask-in-audit" {
			r.MaskedFields++
			inc(&r.ByAction, "mask-in-audit")
		}
	}
	if e.Blocked != "" {
		r.Blocked++
		inc(&r.ByReason, e.Blocked)
	}
}

// actionOf tells a field action from the value it left.
func actionOf(v string) string {
	switch {
	case strings.HasPrefix(v, "hmac-sha256:"):
		return "hash"
	case v == "[REDACTED]":
		return "redact"
	}
	return "mask"
}

func inc(m *map[string]int, k string) {
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k]++
}
