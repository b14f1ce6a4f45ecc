package auditconfig

import (
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/meshwarden/meshwarden/filters/kit/kitconfig"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// Field actions (FieldAction.Action).
const (
	// ActionRedact replaces the value with [REDACTED] (forwarded: a header
	// or query parameter is removed, a JSON value becomes "[REDACTED]").
	ActionRedact = "redact"
	// ActionMask keeps the last Keep characters and stars the rest
	// (4111111111111111 → ************1111).
	ActionMask = "mask"
	// ActionHash replaces the value with hmac-sha256:<key id>:<hex> of
	// HMAC-SHA256(current key, value): joinable, re-derivable by whoever
	// holds the key, not reversible.
	ActionHash = "hash"
	// ActionTokenise (format-preserving, reversible encryption) is not
	// available: see docs/RATIONALE-filters.md.
	ActionTokenise = "tokenise"
)

// PII actions (PII.Action).
const (
	// PIIFlag lists the detections in the record (pii) and counts them.
	PIIFlag = "flag"
	// PIIMaskInAudit also masks the detected values wherever the record
	// would carry them (path, resource, captured headers, the body digest).
	PIIMaskInAudit = "mask-in-audit"
	// PIIBlock refuses the request with a local 4xx reply and a record.
	PIIBlock = "block"
)

// Built-in PII detectors (PII.Detectors).
const (
	DetectCard  = "card"  // 13–19 digits, spaces or dashes between, Luhn-checked
	DetectIBAN  = "iban"  // ISO 13616, mod-97 checksum
	DetectEmail = "email" // local@domain.tld
	DetectPhone = "phone" // E.164-ish: +, 8–15 digits, separators
)

// BuiltinDetectors are the built-in detectors, the default set.
var BuiltinDetectors = []string{DetectCard, DetectIBAN, DetectEmail, DetectPhone}

// Scan scopes (PII.Scan).
const (
	ScanBody    = "body"
	ScanQuery   = "query"
	ScanHeaders = "headers"
)

// DefaultMaskKeep is the characters a mask keeps by default (PCI DSS 3.4:
// at most the last four digits of a PAN).
const DefaultMaskKeep = 4

// DefaultPIIBlockStatus is the status of a PII block.
const DefaultPIIBlockStatus = 422

// FieldAction transforms one field in what the filter records and, with
// Forward, in what it forwards upstream. Exactly one of Header, Query and
// Body is set.
type FieldAction struct {
	// Header is a request header name (lowercase).
	Header string `json:"header,omitempty"`
	// Query is a query parameter name.
	Query string `json:"query,omitempty"`
	// Body is a JSON body field path, names joined by dots (card.number);
	// arrays are searched through.
	Body string `json:"body,omitempty"`
	// Action is redact, mask or hash (tokenise is reserved: not available).
	Action string `json:"action"`
	// Keep is how many trailing characters a mask keeps (default 4; 0
	// means 4; values no longer than Keep are masked whole).
	Keep int `json:"keep,omitempty"`
	// Forward applies the action to the request forwarded upstream too
	// (header replaced or removed, query rewritten, JSON body rewritten).
	// A body that cannot be rewritten (not JSON, longer than maxBodyBytes)
	// is then refused with 400 or 413 rather than forwarded in clear.
	Forward bool `json:"forward,omitempty"`
}

// PII configures detection of personal data in requests.
type PII struct {
	// Detectors are built-in detectors: card, iban, email, phone (default:
	// all four when neither detectors nor patterns are given).
	Detectors []string `json:"detectors,omitempty"`
	// Patterns are extra detectors, Go RE2 regular expressions (linear
	// time: no catastrophic backtracking is possible).
	Patterns []Pattern `json:"patterns,omitempty"`
	// Action is flag, mask-in-audit or block.
	Action string `json:"action"`
	// Scan lists where to look: body (default), query, headers (every
	// request header but pseudo-headers and the always-redacted ones).
	Scan []string `json:"scan,omitempty"`
	// MaxScanBytes bounds the body bytes scanned (default and maximum:
	// maxBodyBytes).
	MaxScanBytes int `json:"maxScanBytes,omitempty"`
	// TooLarge is what happens to a body longer than MaxScanBytes: flag
	// (default; the record says scan-limit@body) or block.
	TooLarge string `json:"tooLarge,omitempty"`
	// BlockStatus is the status of a block (400–499, default 422).
	BlockStatus int `json:"blockStatus,omitempty"`
	// Cleartext is what happens when PII is detected in a request that
	// did not arrive over mTLS (the connection.mtls property is false):
	// "" (default) nothing, flag (the record lists cleartext@connection)
	// or block (a local 426 reply, blocked cleartext-pii:<detectors>).
	Cleartext string `json:"cleartext,omitempty"`
}

// CleartextBlockStatus is the status of a cleartext-pii block (426
// Upgrade Required: retry over mTLS).
const CleartextBlockStatus = 426

// Pattern is a named regular expression detector.
type Pattern struct {
	// Name appears in records (customer-id@body): lowercase letters,
	// digits and '-'.
	Name string `json:"name"`
	// Regex is Go RE2 syntax, at most 1024 bytes.
	Regex string `json:"regex"`
}

// HashKey is an HMAC-SHA256 key of the hash action.
type HashKey struct {
	// ID is recorded in every record hashed with the key (key_id), so an
	// auditor knows which key re-derives it: letters, digits, '.', '_', '-'.
	ID string `json:"id"`
	// Secret is the key, base64 (standard), at least 32 bytes decoded. It
	// is never logged nor recorded; config dumps show [redacted].
	Secret string `json:"secret"`
}

// DecodedSecret returns the key bytes (after Validate, never an error).
func (k HashKey) DecodedSecret() []byte {
	b, _ := base64.StdEncoding.DecodeString(k.Secret)
	return b
}

// CurrentKey is the key new hashes use: hashKeys[0]. Nil when none.
func (c *Config) CurrentKey() *HashKey {
	if len(c.HashKeys) == 0 {
		return nil
	}
	return &c.HashKeys[0]
}

// RuleFields is the rule's field actions followed by the global ones.
func (c *Config) RuleFields(i int) []FieldAction {
	r := &c.Rules[i]
	if len(c.Fields) == 0 {
		return r.Fields
	}
	return append(append([]FieldAction(nil), r.Fields...), c.Fields...)
}

// RulePII is the rule's PII configuration, else the global one, else nil.
func (c *Config) RulePII(i int) *PII {
	if p := c.Rules[i].PII; p != nil {
		return p
	}
	return c.PII
}

var (
	tagRe     = regexp.MustCompile(`^[A-Za-z0-9._:/=-]{1,64}$`)
	keyIDRe   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	patNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
)

func (p *PII) setDefaults(maxBody int) {
	if len(p.Detectors) == 0 && len(p.Patterns) == 0 {
		p.Detectors = append([]string(nil), BuiltinDetectors...)
	}
	if len(p.Scan) == 0 {
		p.Scan = []string{ScanBody}
	}
	kitconfig.Default(&p.MaxScanBytes, maxBody)
	kitconfig.Default(&p.TooLarge, PIIFlag)
	kitconfig.Default(&p.BlockStatus, DefaultPIIBlockStatus)
}

func (p *PII) validate(at string, maxBody int) error {
	switch p.Action {
	case PIIFlag, PIIMaskInAudit, PIIBlock:
	case "":
		return fieldErr(at+".action", "is empty: use flag, mask-in-audit or block")
	default:
		return fieldErr(at+".action", "%q is not a PII action: use flag, mask-in-audit or block", p.Action)
	}
	for i, d := range p.Detectors {
		if !contains(BuiltinDetectors, d) {
			return fieldErr(guestfmt.Sprintf("%s.detectors[%d]", at, i), "%q is not a detector: use %s, or add a pattern", d, strings.Join(BuiltinDetectors, ", "))
		}
	}
	seen := map[string]bool{}
	for _, d := range p.Detectors {
		seen[d] = true
	}
	for i, pt := range p.Patterns {
		f := guestfmt.Sprintf("%s.patterns[%d]", at, i)
		if !patNameRe.MatchString(pt.Name) {
			return fieldErr(f+".name", "%q is not a detector name: use lowercase letters, digits and '-', e.g. customer-id", pt.Name)
		}
		if seen[pt.Name] {
			return fieldErr(f+".name", "%q is used twice: give each detector its own name", pt.Name)
		}
		seen[pt.Name] = true
		if len(pt.Regex) == 0 || len(pt.Regex) > 1024 {
			return fieldErr(f+".regex", "must be 1 to 1024 bytes long")
		}
		re, err := regexp.Compile(pt.Regex)
		if err != nil {
			return fieldErr(f+".regex", "is not a Go RE2 expression: %v", err)
		}
		if re.MatchString("") {
			return fieldErr(f+".regex", "%q matches the empty string: it would flag every request", pt.Regex)
		}
	}
	for i, s := range p.Scan {
		if s != ScanBody && s != ScanQuery && s != ScanHeaders {
			return fieldErr(guestfmt.Sprintf("%s.scan[%d]", at, i), "%q is not a scan scope: use body, query or headers", s)
		}
	}
	if p.MaxScanBytes < 1 || p.MaxScanBytes > maxBody {
		return fieldErr(at+".maxScanBytes", "%d is out of range: use 1 to maxBodyBytes (%d), or raise maxBodyBytes", p.MaxScanBytes, maxBody)
	}
	if p.TooLarge != PIIFlag && p.TooLarge != PIIBlock {
		return fieldErr(at+".tooLarge", "%q is not an action for a body too large to scan: use flag or block", p.TooLarge)
	}
	if p.Cleartext != "" && p.Cleartext != PIIFlag && p.Cleartext != PIIBlock {
		return fieldErr(at+".cleartext", "%q is not an action for PII over a plaintext hop: use flag or block (or omit it)", p.Cleartext)
	}
	if p.BlockStatus < 400 || p.BlockStatus > 499 {
		return fieldErr(at+".blockStatus", "%d is not a 4xx status: use 400 to 499 (0 means 422)", p.BlockStatus)
	}
	return nil
}

func (c *Config) validateFields(at string, fs []FieldAction) error {
	for i := range fs {
		f := &fs[i]
		p := guestfmt.Sprintf("%s[%d]", at, i)
		n := 0
		for _, s := range []string{f.Header, f.Query, f.Body} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			return fieldErr(p, "must set exactly one of header, query and body")
		}
		switch {
		case f.Header != "" && !kitconfig.ValidHeaderName(f.Header):
			return fieldErr(p+".header", kitconfig.HeaderNameReason, f.Header)
		case f.Body != "" && !validFieldPath(f.Body):
			return fieldErr(p+".body", "%q is not a field path: write names joined by dots, e.g. card.number", f.Body)
		case f.Header != "" && (strings.HasPrefix(f.Header, ":") || f.Header == "host"):
			return fieldErr(p+".header", "%q is a pseudo-header: name a request header", f.Header)
		}
		switch f.Action {
		case ActionRedact, ActionMask:
		case ActionHash:
			if len(c.HashKeys) == 0 {
				return fieldErr(p+".action", "hash needs a key: add hashKeys: [{id: ..., secret: <base64 of 32 random bytes>}] (head -c32 /dev/urandom | base64)")
			}
		case ActionTokenise:
			return fieldErr(p+".action", "tokenise is not available: no well-kept FF1/FF3 library is served to this build (docs/RATIONALE-filters.md): use hash (keyed, joinable) or mask")
		case "":
			return fieldErr(p+".action", "is empty: use redact, mask or hash")
		default:
			return fieldErr(p+".action", "%q is not a field action: use redact, mask or hash", f.Action)
		}
		if f.Keep < 0 || f.Keep > 64 {
			return fieldErr(p+".keep", "%d is out of range: use 0 to 64 (0 means 4)", f.Keep)
		}
		if f.Keep != 0 && f.Action != ActionMask {
			return fieldErr(p+".keep", "applies to mask only: remove it or use action: mask")
		}
	}
	return nil
}

func (c *Config) validateCompliance() error {
	ids := map[string]bool{}
	for i, k := range c.HashKeys {
		p := guestfmt.Sprintf("hashKeys[%d]", i)
		if !keyIDRe.MatchString(k.ID) {
			return fieldErr(p+".id", "%q is not a key id: use 1 to 64 letters, digits, '.', '_' or '-', e.g. pii-2026-12", k.ID)
		}
		if ids[k.ID] {
			return fieldErr(p+".id", "%q is used twice: a key id must name one key, or records become ambiguous", k.ID)
		}
		ids[k.ID] = true
		// Never echo the secret: this message reaches logs and CLIs.
		b, err := base64.StdEncoding.DecodeString(k.Secret)
		if err != nil {
			return fieldErr(p+".secret", "is not standard base64: encode the key bytes, e.g. head -c32 /dev/urandom | base64")
		}
		if len(b) < 32 {
			return fieldErr(p+".secret", "is %d bytes decoded: use at least 32 random bytes", len(b))
		}
	}
	for j, t := range c.ServiceTags {
		if !tagRe.MatchString(t) {
			return fieldErr(guestfmt.Sprintf("serviceTags[%d]", j), "%q is not a tag: use 1 to 64 letters, digits and . _ : / = -, e.g. pci or region=eu", t)
		}
	}
	if err := c.validateFields("fields", c.Fields); err != nil {
		return err
	}
	if c.PII != nil {
		if err := c.PII.validate("pii", c.MaxBodyBytes); err != nil {
			return err
		}
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		p := guestfmt.Sprintf("rules[%d]", i)
		for j, t := range r.Tags {
			if !tagRe.MatchString(t) {
				return fieldErr(guestfmt.Sprintf("%s.tags[%d]", p, j), "%q is not a tag: use 1 to 64 letters, digits and . _ : / = -, e.g. pci or region=eu", t)
			}
		}
		if err := c.validateFields(p+".fields", r.Fields); err != nil {
			return err
		}
		if r.PII != nil {
			if err := r.PII.validate(p+".pii", c.MaxBodyBytes); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Config) setComplianceDefaults() {
	if c.PII != nil {
		c.PII.setDefaults(c.MaxBodyBytes)
	}
	for i := range c.Rules {
		if p := c.Rules[i].PII; p != nil {
			p.setDefaults(c.MaxBodyBytes)
		}
	}
}

func validFieldPath(f string) bool {
	return f != "" && !strings.HasPrefix(f, ".") && !strings.HasSuffix(f, ".") && !strings.Contains(f, "..")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
