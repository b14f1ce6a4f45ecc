// Package audit defines Meshwarden's audit record: the one Go type shared by
// the audit filter (which builds events inside the proxy), the gateway and the
// audit collector (which chains, stores, verifies and exports them).
//
// # Chain
//
// The collector links every stored record to the one before it:
//
//	hash = SHA-256( prev_hash || canonical(event without hash) )
//
// where canonical is [Event.AppendCanonical]: a fixed-order, reflection-free
// JSON encoding, so every party computes the same bytes. Altering, dropping,
// inserting or reordering a record breaks every hash after it; truncation is
// caught against the collector's signed checkpoints.
//
// # Notes
//
// This package is compiled into the .wasm filters, so it uses no goroutines,
// no reflection-heavy encoders on the hot path and nothing outside the
// standard library.
package auditevent

import (
	"errors"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/meshwarden/meshwarden/internal/guestcrypto"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// Phase says which half of an audited exchange a record describes.
type Phase string

const (
	// PhaseIntent is recorded before a request is forwarded. For fail-closed
	// operations the request waits until the collector acknowledges it.
	PhaseIntent Phase = "intent"
	// PhaseOutcome is recorded after the response (status, latency).
	PhaseOutcome Phase = "outcome"
)

// Level orders records by severity for retention and alerting.
type Level string

const (
	LevelInfo     Level = "info"
	LevelNotice   Level = "notice"
	LevelCritical Level = "critical"
)

// Event is one audit record. Field names are the wire and storage names.
type Event struct {
	// ID is unique per record: "<trace_id>-<seq>-<phase>".
	ID        string `json:"id"`
	Seq       uint64 `json:"seq,omitempty"` // collector-assigned position in the chain
	Phase     Phase  `json:"phase"`
	Level     Level  `json:"level"`
	OpType    string `json:"op_type"`
	Subject   string `json:"subject"`
	Resource  string `json:"resource"`
	Timestamp int64  `json:"timestamp"` // Unix nanoseconds at the proxy
	TraceID   string `json:"trace_id"`
	Dye       string `json:"dye,omitempty"`
	Tenant    string `json:"tenant,omitempty"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Status    int    `json:"status,omitempty"`
	LatencyNS int64  `json:"latency,omitempty"`
	// Redacted lists the header names and JSON body fields whose values were
	// removed before the record left the proxy.
	Redacted []string `json:"redacted,omitempty"`
	// Headers holds the captured (non-redacted) request headers, if any.
	Headers map[string]string `json:"headers,omitempty"`
	// BodyDigest is "sha256:<hex>" of the request body (up to the filter's
	// bound); BodyTruncated says the digest covers only the first bytes.
	BodyDigest    string `json:"body_digest,omitempty"`
	BodyTruncated bool   `json:"body_truncated,omitempty"`
	// Source names the proxy that produced the record (node id / plugin).
	Source   string `json:"source,omitempty"`
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`

	// The compliance fields (issue 21). They follow prev_hash in the
	// canonical form and are written only when set, so the canonical bytes
	// (and hashes) of records that predate them are unchanged.

	// Tags are the compliance tags of the rule that matched (pci, gdpr,
	// region=eu), from policy.
	Tags []string `json:"tags,omitempty"`
	// Fields holds what the filter's field actions wrote in place of a
	// value, keyed "header:NAME", "query:NAME" or "body:PATH": a masked
	// value (************1234), a keyed hash (hmac-sha256:<hex>, key KeyID)
	// or [REDACTED]. Clear values never appear here.
	Fields map[string]string `json:"fields,omitempty"`
	// KeyID names the HMAC key of the keyed hashes in Fields (and of a
	// keyed BodyDigest), so an auditor holding that key can re-derive them.
	KeyID string `json:"key_id,omitempty"`
	// PII lists what the detectors found, "DETECTOR@WHERE" (card@body,
	// email@header:x-contact, iban@query:acct), plus "scan-limit@body"
	// when the body was longer than the scan bound.
	PII []string `json:"pii,omitempty"`
	// PIIAction is the policy's action on detections: flag, mask-in-audit
	// or block.
	PIIAction string `json:"pii_action,omitempty"`
	// Blocked says why the filter refused the request (pii:card,
	// scan-limit, body-not-maskable); empty when it was forwarded.
	Blocked string `json:"blocked,omitempty"`
}

// ErrInvalid marks an event that cannot be accepted.
var ErrInvalid = errors.New("invalid audit event")

// Validate checks the fields a collector relies on.
func (e *Event) Validate() error {
	switch {
	case e.ID == "":
		return guestfmt.Errorf("%w: id is empty", ErrInvalid)
	case e.Phase != PhaseIntent && e.Phase != PhaseOutcome:
		return guestfmt.Errorf("%w: phase %q must be %q or %q", ErrInvalid, e.Phase, PhaseIntent, PhaseOutcome)
	case e.OpType == "":
		return guestfmt.Errorf("%w: op_type is empty", ErrInvalid)
	case e.Timestamp <= 0:
		return guestfmt.Errorf("%w: timestamp must be positive Unix nanoseconds", ErrInvalid)
	}
	return nil
}

// AppendCanonical appends the canonical encoding of e, every field but Hash,
// to b. The encoding is JSON with a fixed key order and sorted map keys.
func (e *Event) AppendCanonical(b []byte) []byte {
	b = e.appendHead(b)
	b = appendUintField(b, "seq", e.Seq)
	b = e.appendMiddle(b)
	b = appendStrField(b, "prev_hash", e.PrevHash, false)
	return e.appendTail(b)
}

// Template is the canonical encoding of an event with its two chain
// members, seq and prev_hash, left out, so that the costly part of the
// encoding can be done before the event's place in the chain is known (in
// parallel, by each request) and the chain position filled in later by
// [Template.AppendChained] with two copies.
type Template struct {
	// Bytes is canonical(e) without the seq and prev_hash members.
	Bytes []byte
	// SeqAt and PrevAt are where those members go in Bytes.
	SeqAt, PrevAt int
}

// AppendTemplate appends e's template to b and returns the grown slice and
// the template (whose Bytes alias the appended part of b).
func (e *Event) AppendTemplate(b []byte) ([]byte, Template) {
	start := len(b)
	b = e.appendHead(b)
	seqAt := len(b) - start
	b = e.appendMiddle(b)
	prevAt := len(b) - start
	b = e.appendTail(b)
	return b, Template{Bytes: b[start:len(b):len(b)], SeqAt: seqAt, PrevAt: prevAt}
}

// AppendChained appends the canonical encoding of the template's event with
// Seq = seq and PrevHash = prev: byte for byte what AppendCanonical gives.
func (t Template) AppendChained(b []byte, seq uint64, prev string) []byte {
	b = append(b, t.Bytes[:t.SeqAt]...)
	b = appendUintField(b, "seq", seq)
	b = append(b, t.Bytes[t.SeqAt:t.PrevAt]...)
	b = appendStrField(b, "prev_hash", prev, false)
	return append(b, t.Bytes[t.PrevAt:]...)
}

// ChainedLen is the length AppendChained appends for a seq of seqDigits
// decimal digits and a prev hash of prevLen bytes that need no escaping.
func (t Template) ChainedLen(seqDigits, prevLen int) int {
	return len(t.Bytes) + len(`,"seq":`) + seqDigits + len(`,"prev_hash":""`) + prevLen
}

// appendHead is the canonical encoding up to the seq member: {"id":…
func (e *Event) appendHead(b []byte) []byte {
	b = append(b, '{')
	return appendStrField(b, "id", e.ID, true)
}

// appendMiddle is the canonical encoding from phase up to the prev_hash
// member.
func (e *Event) appendMiddle(b []byte) []byte {
	b = appendStrField(b, "phase", string(e.Phase), false)
	b = appendStrField(b, "level", string(e.Level), false)
	b = appendStrField(b, "op_type", e.OpType, false)
	b = appendStrField(b, "subject", e.Subject, false)
	b = appendStrField(b, "resource", e.Resource, false)
	b = appendIntField(b, "timestamp", e.Timestamp)
	b = appendStrField(b, "trace_id", e.TraceID, false)
	b = appendStrField(b, "dye", e.Dye, false)
	b = appendStrField(b, "tenant", e.Tenant, false)
	b = appendStrField(b, "method", e.Method, false)
	b = appendStrField(b, "path", e.Path, false)
	b = appendIntField(b, "status", int64(e.Status))
	b = appendIntField(b, "latency", e.LatencyNS)
	b = appendStrList(b, "redacted", e.Redacted)
	b = appendStrMap(b, "headers", e.Headers)
	b = appendStrField(b, "body_digest", e.BodyDigest, false)
	b = append(b, `,"body_truncated":`...)
	b = strconv.AppendBool(b, e.BodyTruncated)
	return appendStrField(b, "source", e.Source, false)
}

// appendTail is the canonical encoding after the prev_hash member.
func (e *Event) appendTail(b []byte) []byte {
	b = e.AppendCompliance(b)
	return append(b, '}')
}

// AppendCompliance appends the compliance members (tags, fields, key_id,
// pii, pii_action, blocked), each only when set, each preceded by a comma.
// It is the tail of the canonical form, shared with the audit filter's own
// encoder. Appending nothing for an event without them keeps older records'
// canonical bytes, so their hashes still verify.
func (e *Event) AppendCompliance(b []byte) []byte {
	if len(e.Tags) > 0 {
		b = appendStrList(b, "tags", e.Tags)
	}
	if len(e.Fields) > 0 {
		b = appendStrMap(b, "fields", e.Fields)
	}
	if e.KeyID != "" {
		b = appendStrField(b, "key_id", e.KeyID, false)
	}
	if len(e.PII) > 0 {
		b = appendStrList(b, "pii", e.PII)
	}
	if e.PIIAction != "" {
		b = appendStrField(b, "pii_action", e.PIIAction, false)
	}
	if e.Blocked != "" {
		b = appendStrField(b, "blocked", e.Blocked, false)
	}
	return b
}

func appendStrList(b []byte, k string, list []string) []byte {
	b = append(b, `,"`...)
	b = append(b, k...)
	b = append(b, `":[`...)
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	return append(b, ']')
}

// appendStrMap appends ,"k":{...} with m's keys sorted.
func appendStrMap(b []byte, k string, m map[string]string) []byte {
	b = append(b, `,"`...)
	b = append(b, k...)
	b = append(b, `":{`...)
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for i, key := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, key)
		b = append(b, ':')
		b = AppendJSONString(b, m[key])
	}
	return append(b, '}')
}

// ComputeHash returns hex(SHA-256(prevHash || canonical(e))) with e.PrevHash
// taken as prevHash. It does not modify e.
func (e *Event) ComputeHash() string {
	var buf [1024]byte
	c := e.AppendCanonical(buf[:0])
	h := guestcrypto.NewSHA256()
	h.Write([]byte(e.PrevHash))
	h.Write(c)
	var sum [guestcrypto.Size]byte
	return guestfmt.Hex(h.Sum(sum[:0]))
}

// Chain sets e.PrevHash to prev and e.Hash to the record's hash, and returns
// the new hash, which is the next record's prev.
func (e *Event) Chain(prev string) string {
	e.PrevHash = prev
	e.Hash = e.ComputeHash()
	return e.Hash
}

// VerifyLink reports whether e is correctly chained after prev.
func (e *Event) VerifyLink(prev string) error {
	if e.PrevHash != prev {
		return guestfmt.Errorf("record %s (seq %d): prev_hash %.16s… does not match the previous record's hash %.16s…", e.ID, e.Seq, e.PrevHash, prev)
	}
	if got := e.ComputeHash(); got != e.Hash {
		return guestfmt.Errorf("record %s (seq %d): hash %.16s… does not match its content (recomputed %.16s…): the record was altered", e.ID, e.Seq, e.Hash, got)
	}
	return nil
}

func appendStrField(b []byte, k, v string, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, k...)
	b = append(b, `":`...)
	return AppendJSONString(b, v)
}

func appendIntField(b []byte, k string, v int64) []byte {
	b = append(b, `,"`...)
	b = append(b, k...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, v, 10)
}

func appendUintField(b []byte, k string, v uint64) []byte {
	b = append(b, `,"`...)
	b = append(b, k...)
	b = append(b, `":`...)
	return strconv.AppendUint(b, v, 10)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does, so the canonical form is always valid JSON.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20 && c != '<' && c != '>' && c != '&':
				b = append(b, c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
