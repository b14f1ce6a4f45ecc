// Package audit is Meshwarden's audit-capture filter. It matches sensitive
// operations by method and path, builds internal/auditevent.Event records (subject,
// resource, redacted headers, SHA-256 body digest, status, latency) and
// delivers them in batches to the audit collector. Fail-closed operations are
// held until the collector acknowledges an "intent" record.
//
// Its configuration is the pure package filters/audit/auditconfig; this
// package is the engine (plain Go, tested natively) and the proxy-wasm plugin.
package audit

import (
	"strings"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// alwaysRedacted headers never leave the proxy, whatever the config says.
var alwaysRedacted = [...]string{"authorization", "cookie", "proxy-authorization", auditevent.TokenHeader}

// Engine applies a validated auditconfig.Config. It is immutable and safe to share.
type Engine struct {
	cfg        *auditconfig.Config
	rules      []compiledRule
	redactHdr  map[string]bool
	bodyFields [][]string
	// key and keyID are the current HMAC key of the hash action (nil
	// without hashKeys). The key never leaves the engine.
	key   []byte
	keyID string
}

type compiledRule struct {
	*auditconfig.Rule
	segs     []string // pattern segments
	resource auditconfig.Template
	comp     *ruleCompliance // nil: no tags, field actions or PII detection
}

// NewEngine compiles cfg, which must have passed Validate.
func NewEngine(cfg *auditconfig.Config) *Engine {
	e := &Engine{cfg: cfg, redactHdr: map[string]bool{}}
	if k := cfg.CurrentKey(); k != nil {
		e.key, e.keyID = k.DecodedSecret(), k.ID
	}
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		cr := compiledRule{Rule: r}
		if r.Path.Pattern != "" {
			cr.segs = strings.Split(r.Path.Pattern[1:], "/")
		}
		cr.resource, _ = auditconfig.ParseTemplate(r.Resource)
		e.rules = append(e.rules, cr)
	}
	for i := range e.rules {
		e.rules[i].comp = e.compileCompliance(i)
	}
	for _, h := range alwaysRedacted {
		e.redactHdr[h] = true
	}
	for _, h := range cfg.Redact.Headers {
		e.redactHdr[h] = true
	}
	for _, f := range cfg.Redact.BodyFields {
		e.bodyFields = append(e.bodyFields, strings.Split(f, "."))
	}
	return e
}

// Config returns the engine's configuration.
func (e *Engine) Config() *auditconfig.Config { return e.cfg }

// Match returns the index of the first rule matching method and path (the
// query is ignored), or -1.
func (e *Engine) Match(method, path string) int {
	p := path
	if q := strings.IndexByte(path, '?'); q >= 0 {
		p = path[:q]
	}
	for i := range e.rules {
		r := &e.rules[i]
		if len(r.Methods) > 0 && !contains(r.Methods, method) {
			continue
		}
		if r.matchPath(p) {
			return i
		}
	}
	return -1
}

// Rule returns rule i.
func (e *Engine) Rule(i int) *auditconfig.Rule { return e.rules[i].Rule }

func (r *compiledRule) matchPath(p string) bool {
	switch {
	case r.Path.Exact != "":
		return p == r.Path.Exact
	case r.Path.Prefix != "":
		return strings.HasPrefix(p, r.Path.Prefix)
	}
	rest := strings.TrimPrefix(p, "/")
	for i, s := range r.segs {
		if s == "**" {
			return true
		}
		seg, tail, more := rest, "", false
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg, tail, more = rest[:j], rest[j+1:], true
		}
		if s != "*" && s != seg || s == "*" && seg == "" {
			return false
		}
		if !more {
			return i == len(r.segs)-1
		}
		rest = tail
	}
	return false
}

// RequestInfo is what the filter read from a request.
type RequestInfo struct {
	Method, Path string
	// Header returns a request header (lowercase name) or "".
	Header func(name string) string
	// PeerIdentity is the peer's SPIFFE id, or "".
	PeerIdentity string
	TraceID      string
	Dye, Tenant  string
	// Intern, when set, makes the event's resource string from the bytes
	// rendered into *Scratch (a buffer the caller reuses), instead of a
	// Go allocation: the plugin carves it from its VM's arena.
	Intern  func([]byte) string
	Scratch *[]byte
}

// NewEvent builds the record of a request matched by rule i: everything but
// the id, phase, timestamp, body digest, status and latency.
func (e *Engine) NewEvent(i int, ri *RequestInfo) auditevent.Event {
	var ev auditevent.Event
	e.FillEvent(&ev, i, ri)
	return ev
}

// FillEvent is NewEvent writing the record into *ev (which it resets
// first): the plugin builds it in its stream context, without copying the
// whole record (a few hundred bytes) out of a return value.
func (e *Engine) FillEvent(ev *auditevent.Event, i int, ri *RequestInfo) {
	r := &e.rules[i]
	hdr := ri.Header
	if hdr == nil {
		hdr = func(string) string { return "" }
	}
	path, query := ri.Path, ""
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path, query = path[:q], path[q+1:]
	}
	*ev = auditevent.Event{}
	ev.Level = auditevent.Level(r.Level)
	ev.OpType = r.OpType
	ev.Subject = e.subject(ri, hdr)
	ev.TraceID = ri.TraceID
	ev.Dye, ev.Tenant = ri.Dye, ri.Tenant
	ev.Method, ev.Path = ri.Method, path
	ev.Source = e.cfg.Source
	for _, h := range e.cfg.CaptureHeaders {
		v := hdr(h)
		if v == "" {
			continue
		}
		if e.redactHdr[h] {
			ev.Redacted = append(ev.Redacted, "header:"+h)
			continue
		}
		if ev.Headers == nil {
			ev.Headers = map[string]string{}
		}
		ev.Headers[h] = v
	}
	if r.comp != nil {
		hdr, query = e.applyCompliance(r.comp, ev, hdr, query)
	}
	ev.Tags = e.WithServiceTags(ev.Tags)
	if ri.Intern != nil && ri.Scratch != nil {
		*ri.Scratch = r.resource.AppendExpand((*ri.Scratch)[:0], ri.Method, path, query, hdr)
		ev.Resource = ri.Intern(*ri.Scratch)
	} else {
		ev.Resource = r.resource.Expand(ri.Method, path, query, hdr)
	}
}

// WithServiceTags returns tags followed by the configuration's
// serviceTags not already in it (tags itself when there are none).
func (e *Engine) WithServiceTags(tags []string) []string {
	for _, t := range e.cfg.ServiceTags {
		if !contains(tags, t) {
			tags = append(tags[:len(tags):len(tags)], t)
		}
	}
	return tags
}

// subject is the subject header when the peer is trusted to set it, else
// the peer identity, else "anonymous".
func (e *Engine) subject(ri *RequestInfo, hdr func(string) string) string {
	s := e.cfg.Subject
	if s.Header != "" && e.TrustsPeer(ri.PeerIdentity) {
		if v := hdr(s.Header); v != "" {
			return v
		}
	}
	if ri.PeerIdentity != "" {
		return ri.PeerIdentity
	}
	return "anonymous"
}

// SubjectHeader is the identity-bearing request header: subject.header, or
// auditconfig.DefaultSubjectHeader when none is configured.
func (e *Engine) SubjectHeader() string {
	if e.cfg.Subject.Header != "" {
		return e.cfg.Subject.Header
	}
	return auditconfig.DefaultSubjectHeader
}

// TrustsPeer reports whether peer (an authenticated SPIFFE id) may set the
// subject header. Nobody may unless subject.trustedPeers names it: by
// default the header is stripped and the subject is the peer identity.
func (e *Engine) TrustsPeer(peer string) bool {
	return e.cfg.Subject.Header != "" && identityIn(e.cfg.Subject.TrustedPeers, peer)
}

// BodyFieldsConfigured reports whether JSON body fields are redacted.
func (e *Engine) BodyFieldsConfigured() bool { return len(e.bodyFields) > 0 }

// DigestBody sets ev's body digest from body with the global redaction
// only (ProcessBody with no rule). complete says body is the whole request
// body; when it is not, BodyTruncated is set. Configured JSON fields are
// redacted before hashing, so a low-entropy secret (a PIN) cannot be
// recovered from the digest by guessing; when a truncated or non-JSON body
// cannot be redacted, Redacted says "body" and the digest is keyed (with
// hashKeys) or absent.
func (e *Engine) DigestBody(ev *auditevent.Event, body []byte, complete bool) {
	e.ProcessBody(-1, ev, body, complete)
}

// AppendBatch appends the wire JSON of an internal/auditevent.Batch whose
// events are already canonically encoded (Event.AppendCanonical, which is
// valid JSON with the wire field names).
func AppendBatch(b []byte, sender string, events [][]byte) []byte {
	b = append(b, `{"sender":`...)
	b = auditevent.AppendJSONString(b, sender)
	b = append(b, `,"events":[`...)
	for i, ev := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ev...)
	}
	return append(b, "]}"...)
}

func identityIn(list []string, id string) bool {
	if id == "" {
		return false
	}
	for _, p := range list {
		if strings.HasSuffix(p, "/*") && strings.HasPrefix(id, p[:len(p)-1]) || p == id {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
