package audit

import (
	"sort"
	"strings"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/guestcrypto"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
	"github.com/meshwarden/meshwarden/internal/guestjson"
	"github.com/meshwarden/meshwarden/internal/guesturl"
)

// Block reasons (Event.Blocked, besides "pii:<detectors>").
const (
	BlockScanLimit     = "scan-limit"     // body longer than the scan bound, tooLarge: block
	BlockBodyNotJSON   = "body-not-json"  // forward body actions on a body that is not JSON
	BlockBodyTooLarge  = "body-too-large" // forward body actions on a body past maxBodyBytes
	scanLimitDetection = "scan-limit@body"
)

// HashPrefix starts every keyed hash the filter writes:
// hmac-sha256:<key id>:<64 hex digits>.
const HashPrefix = "hmac-sha256:"

// ruleCompliance is a rule's compiled compliance settings; nil when the
// rule has none, so other rules pay nothing.
type ruleCompliance struct {
	tags                                  []string
	headers, query, body                  []fieldAct
	bodyPaths                             [][]string // of body, aligned
	fwdHeaders, fwdQuery                  bool
	fwdBody                               []fieldAct
	fwdBodyPaths                          [][]string
	pii                                   *auditconfig.PII
	det                                   *Detector
	scanBody, scanQuery, scanHeaders      bool
	maskInAudit, blockPII, blockOversized bool
	// cleartextFlag / cleartextBlock: pii.cleartext.
	cleartextFlag, cleartextBlock bool
}

type fieldAct struct {
	auditconfig.FieldAction
	keep int
}

func (e *Engine) compileCompliance(i int) *ruleCompliance {
	cfg := e.cfg
	fields := cfg.RuleFields(i)
	pii := cfg.RulePII(i)
	tags := cfg.Rules[i].Tags
	if len(fields) == 0 && pii == nil && len(tags) == 0 {
		return nil
	}
	rc := &ruleCompliance{tags: tags, pii: pii}
	for _, f := range fields {
		a := fieldAct{FieldAction: f, keep: f.Keep}
		if a.keep == 0 {
			a.keep = auditconfig.DefaultMaskKeep
		}
		switch {
		case f.Header != "":
			rc.headers = append(rc.headers, a)
			rc.fwdHeaders = rc.fwdHeaders || f.Forward
		case f.Query != "":
			rc.query = append(rc.query, a)
			rc.fwdQuery = rc.fwdQuery || f.Forward
		default:
			rc.body = append(rc.body, a)
			rc.bodyPaths = append(rc.bodyPaths, strings.Split(f.Body, "."))
			if f.Forward {
				rc.fwdBody = append(rc.fwdBody, a)
				rc.fwdBodyPaths = append(rc.fwdBodyPaths, strings.Split(f.Body, "."))
			}
		}
	}
	if pii != nil {
		rc.det = NewDetector(pii)
		for _, s := range pii.Scan {
			switch s {
			case auditconfig.ScanBody:
				rc.scanBody = true
			case auditconfig.ScanQuery:
				rc.scanQuery = true
			case auditconfig.ScanHeaders:
				rc.scanHeaders = true
			}
		}
		rc.maskInAudit = pii.Action == auditconfig.PIIMaskInAudit
		rc.blockPII = pii.Action == auditconfig.PIIBlock
		rc.blockOversized = pii.TooLarge == auditconfig.PIIBlock
		rc.cleartextFlag = pii.Cleartext == auditconfig.PIIFlag
		rc.cleartextBlock = pii.Cleartext == auditconfig.PIIBlock
	}
	return rc
}

// transform returns what field action a writes in place of value v, and
// whether it used the hash key.
func (e *Engine) transform(a *fieldAct, v string) (string, bool) {
	switch a.Action {
	case auditconfig.ActionMask:
		b := []byte(v)
		maskRunes(&b, a.keep)
		return string(b), false
	case auditconfig.ActionHash:
		return e.keyedHash([]byte(v)), true
	}
	return "[REDACTED]", false
}

// keyedHash is hmac-sha256:<current key id>:<hex HMAC-SHA256(key, b)>.
func (e *Engine) keyedHash(b []byte) string {
	m := guestcrypto.NewHMAC(e.key)
	m.Write(b)
	var sum [guestcrypto.Size]byte
	return HashPrefix + e.keyID + ":" + guestfmt.Hex(m.Sum(sum[:0]))
}

// maskRunes stars every character of *b but the last keep (all of them
// when there are no more than keep), counting characters, not bytes.
func maskRunes(b *[]byte, keep int) {
	s := string(*b)
	n := 0
	for range s {
		n++
	}
	out := (*b)[:0:0]
	k := 0
	for _, r := range s {
		if k < n-keep || n <= keep {
			out = append(out, '*')
		} else {
			out = append(out, string(r)...)
		}
		k++
	}
	*b = out
}

// HoldHeaders reports whether rule i needs the request headers held until
// the body is seen: fail-closed, body redaction or field actions (the
// digest needs the whole body), a forwarded body rewrite, or a PII block.
func (e *Engine) HoldHeaders(i int) bool {
	r := &e.rules[i]
	if r.FailClosed || len(e.bodyFields) > 0 {
		return true
	}
	rc := r.comp
	return rc != nil && (len(rc.body) > 0 || rc.scanBody)
}

// PIIBlockStatus is the status of rule i's PII block (422 by default).
func (e *Engine) PIIBlockStatus(i int) int {
	if rc := e.rules[i].comp; rc != nil && rc.pii != nil {
		return rc.pii.BlockStatus
	}
	return auditconfig.DefaultPIIBlockStatus
}

// ForwardsBody reports whether rule i rewrites the forwarded body (the
// filter then drops content-length).
func (e *Engine) ForwardsBody(i int) bool {
	rc := e.rules[i].comp
	return rc != nil && len(rc.fwdBody) > 0
}

// applyCompliance fills the compliance parts of a new record of rule i:
// tags, header and query field actions (in Fields; those headers leave
// Headers), and returns the header lookup and query the resource template
// must expand with, so no clear value reaches the resource either.
func (e *Engine) applyCompliance(rc *ruleCompliance, ev *auditevent.Event, hdr func(string) string, query string) (func(string) string, string) {
	ev.Tags = rc.tags
	if len(rc.headers) > 0 {
		orig := hdr
		repl := map[string]string{}
		for k := range rc.headers {
			a := &rc.headers[k]
			v := orig(a.Header)
			if v == "" {
				continue
			}
			t, keyed := e.transform(a, v)
			e.setField(ev, "header:"+a.Header, t, keyed)
			repl[a.Header] = t
			delete(ev.Headers, a.Header)
		}
		if len(ev.Headers) == 0 {
			ev.Headers = nil
		}
		hdr = func(n string) string {
			if v, ok := repl[n]; ok {
				return v
			}
			return orig(n)
		}
	}
	if len(rc.query) > 0 && query != "" {
		query = e.rewriteQuery(rc, query, func(name, t string, keyed bool) { e.setField(ev, "query:"+name, t, keyed) }, false)
	}
	return hdr, query
}

func (e *Engine) setField(ev *auditevent.Event, k, v string, keyed bool) {
	if ev.Fields == nil {
		ev.Fields = map[string]string{}
	}
	ev.Fields[k] = v
	if keyed {
		ev.KeyID = e.keyID
	}
}

// rewriteQuery applies the query field actions (forwardOnly: those with
// Forward) to a raw query string; a redacted parameter is removed when
// forwarding. found is called per transformed parameter.
func (e *Engine) rewriteQuery(rc *ruleCompliance, query string, found func(name, t string, keyed bool), forwardOnly bool) string {
	var b strings.Builder
	for rest := query; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		name, raw, _ := strings.Cut(kv, "=")
		dname, err := guesturl.QueryUnescape(name)
		if err != nil {
			dname = name
		}
		var act *fieldAct
		for k := range rc.query {
			if a := &rc.query[k]; a.Query == dname && (!forwardOnly || a.Forward) {
				act = a
				break
			}
		}
		if act == nil {
			appendParam(&b, kv)
			continue
		}
		v, err := guesturl.QueryUnescape(raw)
		if err != nil {
			v = raw
		}
		t, keyed := e.transform(act, v)
		if found != nil {
			found(dname, t, keyed)
		}
		if forwardOnly && act.Action == auditconfig.ActionRedact {
			continue
		}
		appendParam(&b, name+"="+guesturl.QueryEscape(t))
	}
	return b.String()
}

func appendParam(b *strings.Builder, kv string) {
	if b.Len() > 0 {
		b.WriteByte('&')
	}
	b.WriteString(kv)
}

// ForwardRewrite returns the header changes and the new :path (when the
// query changes) that rule i's forward field actions make to the request
// upstream; remove lists headers to drop (redact).
func (e *Engine) ForwardRewrite(i int, get func(string) string) (set [][2]string, remove []string, path string) {
	rc := e.rules[i].comp
	if rc == nil {
		return nil, nil, ""
	}
	if rc.fwdHeaders {
		for k := range rc.headers {
			a := &rc.headers[k]
			if !a.Forward {
				continue
			}
			v := get(a.Header)
			if v == "" {
				continue
			}
			if a.Action == auditconfig.ActionRedact {
				remove = append(remove, a.Header)
				continue
			}
			t, _ := e.transform(a, v)
			set = append(set, [2]string{a.Header, t})
		}
	}
	if rc.fwdQuery {
		p, q, ok := strings.Cut(get(":path"), "?")
		if ok {
			if nq := e.rewriteQuery(rc, q, nil, true); nq != q {
				path = p
				if nq != "" {
					path += "?" + nq
				}
			}
		}
	}
	return set, remove, path
}

// ScanRequest runs rule i's PII detection over the query and headers (per
// its scan scopes) and, for mask-in-audit, masks detected values in the
// record's path, resource and captured headers. It returns the block
// reason, or "" to go on.
func (e *Engine) ScanRequest(i int, ev *auditevent.Event, rawPath string, headers [][2]string) string {
	rc := e.rules[i].comp
	if rc == nil || rc.det == nil {
		return ""
	}
	var dets []Detection
	if rc.scanQuery {
		if _, q, ok := strings.Cut(rawPath, "?"); ok {
			for rest := q; rest != ""; {
				var kv string
				kv, rest, _ = strings.Cut(rest, "&")
				name, raw, _ := strings.Cut(kv, "=")
				v, err := guesturl.QueryUnescape(raw)
				if err != nil {
					v = raw
				}
				dets = rc.det.Scan(dets[:0], []byte(v))
				e.addDetections(ev, dets, "query:"+name)
			}
		}
	}
	if rc.scanHeaders {
		for _, kv := range headers {
			if strings.HasPrefix(kv[0], ":") || e.redactHdr[kv[0]] {
				continue
			}
			dets = rc.det.Scan(dets[:0], []byte(kv[1]))
			e.addDetections(ev, dets, "header:"+kv[0])
		}
	}
	if rc.maskInAudit {
		ev.Path = e.maskDetected(rc, ev.Path)
		ev.Resource = e.maskDetected(rc, ev.Resource)
		for k, v := range ev.Headers {
			ev.Headers[k] = e.maskDetected(rc, v)
		}
	}
	ev.PIIAction = rc.pii.Action
	if rc.blockPII && len(ev.PII) > 0 {
		return blockReason(ev.PII)
	}
	return ""
}

// maskDetected returns s with every detected value masked (last 4 kept).
func (e *Engine) maskDetected(rc *ruleCompliance, s string) string {
	var buf [8]Detection
	dets := rc.det.Scan(buf[:0], []byte(s))
	if len(dets) == 0 {
		return s
	}
	b := []byte(s)
	for _, d := range dets {
		maskBytes(b[d.Start:d.End], auditconfig.DefaultMaskKeep)
	}
	return string(b)
}

func (e *Engine) addDetections(ev *auditevent.Event, dets []Detection, where string) {
	for _, d := range dets {
		s := d.Name + "@" + where
		if !containsStr(ev.PII, s) {
			ev.PII = append(ev.PII, s)
		}
	}
}

// blockReason is "pii:" and the detector names, sorted, each once.
func blockReason(pii []string) string {
	var names []string
	for _, p := range pii {
		n, _, _ := strings.Cut(p, "@")
		if n != "scan-limit" && n != "cleartext" && !containsStr(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return "pii:" + strings.Join(names, ",")
}

// BlockCleartext starts the reason of a cleartext block:
// cleartext-pii:<detectors>.
const BlockCleartext = "cleartext-pii"

// cleartextDetection marks a record whose PII arrived over a plaintext hop.
const cleartextDetection = "cleartext@connection"

// ChecksCleartext reports whether rule i has a cleartext setting, so the
// filter reads connection.mtls only for such rules.
func (e *Engine) ChecksCleartext(i int) bool {
	rc := e.rules[i].comp
	return rc != nil && (rc.cleartextFlag || rc.cleartextBlock)
}

// CheckCleartext applies rule i's cleartext setting to a record whose
// detections are in ev.PII: when the hop is not mTLS and PII was detected,
// flag adds cleartext@connection and block returns the reason
// (cleartext-pii:<detectors>) and its status (426). Call it after every
// scan; it returns "" to go on.
func (e *Engine) CheckCleartext(i int, ev *auditevent.Event, mtls bool) (string, int) {
	rc := e.rules[i].comp
	if mtls || rc == nil || !(rc.cleartextFlag || rc.cleartextBlock) {
		return "", 0
	}
	reason := blockReason(ev.PII)
	if reason == "pii:" {
		return "", 0 // nothing detected (or only the scan limit)
	}
	if !containsStr(ev.PII, cleartextDetection) {
		ev.PII = append(ev.PII, cleartextDetection)
	}
	if rc.cleartextBlock {
		return BlockCleartext + strings.TrimPrefix(reason, "pii"), auditconfig.CleartextBlockStatus
	}
	return "", 0
}

// BodyOutcome is what ProcessBody decided about a request body.
type BodyOutcome struct {
	// Forward, when not nil, replaces the body sent upstream.
	Forward []byte
	// Block, when set, is why the request must be refused (Status).
	Block  string
	Status int
}

// ProcessBody scans, transforms and digests the request body of rule i
// (body is complete when it is the whole body). It sets the record's PII,
// Fields, KeyID, Redacted and digest, and says whether to forward a
// rewritten body or refuse the request.
//
// A body that must be transformed but is not valid JSON, or is longer than
// maxBodyBytes, is never half-masked: the record gets no field values and
// a keyed digest (HMAC with the current key, when there is one: a plain
// digest of a body holding a card number could be brute-forced), Redacted
// says "body", and a forwarded rewrite refuses the request instead.
func (e *Engine) ProcessBody(i int, ev *auditevent.Event, body []byte, complete bool) BodyOutcome {
	var rc *ruleCompliance
	if i >= 0 {
		rc = e.rules[i].comp
	}
	var out BodyOutcome
	ev.BodyTruncated = !complete
	if len(body) == 0 && complete {
		return out
	}
	detected := false
	if rc != nil && rc.scanBody {
		n := min(len(body), rc.pii.MaxScanBytes)
		var buf [16]Detection
		dets := rc.det.Scan(buf[:0], body[:n])
		detected = len(dets) > 0
		e.addDetections(ev, dets, "body")
		if len(body) > n || !complete {
			ev.PII = append(ev.PII, scanLimitDetection)
			if rc.blockOversized {
				out.Block, out.Status = BlockScanLimit, 413
			}
		}
		if rc.blockPII && detected && out.Block == "" {
			out.Block, out.Status = blockReason(ev.PII), rc.pii.BlockStatus
		}
	}
	// The record's view: redacted fields and field actions, then (for
	// mask-in-audit) the detected values masked, then the digest.
	paths := e.bodyFields
	if rc != nil && len(rc.body) > 0 {
		paths = append(append([][]string(nil), e.bodyFields...), rc.bodyPaths...)
	}
	rec := body
	if len(paths) > 0 {
		ok := complete
		var names []string
		if ok {
			nRedact := len(e.bodyFields)
			rec, names, ok = TransformJSON(body, paths, func(p int, raw []byte) []byte {
				if p < nRedact {
					return []byte(Redacted)
				}
				a := &rc.body[p-nRedact]
				t, keyed := e.transform(a, jsonValue(raw))
				e.setField(ev, "body:"+a.Body, t, keyed)
				return appendJSONString(nil, t)
			})
		}
		if !ok {
			// Never half-masked: drop whatever field values were set.
			for k := range ev.Fields {
				if strings.HasPrefix(k, "body:") {
					delete(ev.Fields, k)
				}
			}
			ev.Redacted = append(ev.Redacted, "body")
			if e.key != nil {
				ev.BodyDigest = e.keyedHash(body)
				ev.KeyID = e.keyID
			}
			if rc != nil && len(rc.fwdBody) > 0 && out.Block == "" {
				if complete {
					out.Block, out.Status = BlockBodyNotJSON, 400
				} else {
					out.Block, out.Status = BlockBodyTooLarge, 413
				}
			}
			return out
		}
		for _, f := range names {
			if containsPath(e.bodyFields, f) {
				ev.Redacted = append(ev.Redacted, "body:"+f)
			}
		}
	}
	if detected && rc.maskInAudit {
		var buf [16]Detection
		dets := rc.det.Scan(buf[:0], rec)
		if len(dets) > 0 {
			rec = append([]byte(nil), rec...) // never mask the forwarded bytes
			for _, d := range dets {
				maskBytes(rec[d.Start:d.End], auditconfig.DefaultMaskKeep)
			}
		}
	}
	sum := guestcrypto.Sum256(rec)
	ev.BodyDigest = "sha256:" + guestfmt.Hex(sum[:])
	if rc != nil && len(rc.fwdBody) > 0 && out.Block == "" {
		fwd, _, ok := TransformJSON(body, rc.fwdBodyPaths, func(p int, raw []byte) []byte {
			a := &rc.fwdBody[p]
			t, _ := e.transform(a, jsonValue(raw))
			return appendJSONString(nil, t)
		})
		if ok {
			out.Forward = fwd
		}
	}
	return out
}

// jsonValue is the string a JSON value stands for: a string's contents,
// any other value's text.
func jsonValue(raw []byte) string {
	if len(raw) > 0 && raw[0] == '"' {
		if s, ok := guestjson.Unquote(raw); ok {
			return s
		}
	}
	return string(raw)
}

func appendJSONString(b []byte, s string) []byte { return auditevent.AppendJSONString(b, s) }

func containsPath(paths [][]string, dotted string) bool {
	for _, p := range paths {
		if strings.Join(p, ".") == dotted {
			return true
		}
	}
	return false
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
