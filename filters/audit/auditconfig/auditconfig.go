// Package auditconfig is the configuration of the audit filter
// (filters/audit): its schema, defaults, strict parsing and validation, and
// the resource templates it names. It imports no ABI package, so the policy
// loader and the control plane decode and validate the same type the filter
// runs with, without linking guest code.
package auditconfig

import (
	"strings"

	"github.com/meshwarden/meshwarden/filters/kit/kitconfig"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// Defaults applied by SetDefaults.
const (
	DefaultMaxBodyBytes      = 64 << 10
	DefaultBatchSize         = 100
	DefaultFlushIntervalMs   = 1000
	DefaultBufferEvents      = 10000
	DefaultCollectorTimeout  = 2000
	DefaultFailClosedTimeout = 2000
)

// Config is the audit filter's configuration (the plugin configuration in
// Envoy and the gateway, and the `spec:` of an audit policy).
type Config struct {
	// Rules pick the audited operations; the first matching rule applies.
	// Requests no rule matches are not audited.
	Rules []Rule `json:"rules"`
	// Subject says who performed the operation.
	Subject Subject `json:"subject,omitempty"`
	// Redact lists what never leaves the proxy.
	Redact Redact `json:"redact,omitempty"`
	// CaptureHeaders lists request headers copied into the record (minus
	// the redacted ones).
	CaptureHeaders []string `json:"captureHeaders,omitempty"`
	// MaxBodyBytes bounds the request body buffered for the digest (default
	// 65536). A longer body is digested over its first MaxBodyBytes and the
	// record says body_truncated.
	MaxBodyBytes int `json:"maxBodyBytes,omitempty"`
	// Collector is where records go.
	Collector Collector `json:"collector,omitempty"`
	// Batch tunes delivery of records that are not fail-closed intents.
	Batch Batch `json:"batch,omitempty"`
	// FailClosedTimeoutMs bounds the wait for the collector's ack of an
	// intent record (default 2000); past it the request is refused.
	FailClosedTimeoutMs int `json:"failClosedTimeoutMs,omitempty"`
	// Source names this proxy in the records (default: the node id).
	Source string `json:"source,omitempty"`
	// Fields are field actions applied to every audited request, after
	// the matching rule's own.
	Fields []FieldAction `json:"fields,omitempty"`
	// PII is the detection of personal data for rules without their own.
	PII *PII `json:"pii,omitempty"`
	// HashKeys are the HMAC-SHA256 keys of the hash action. The first is
	// current: every new hash uses it and records name its id. Keep the
	// previous key next in the list during a rotation (ids stay unique);
	// the auditor keeps every id's key to re-derive older records.
	HashKeys []HashKey `json:"hashKeys,omitempty"`
	// ServiceTags are compliance tags written into every record this
	// proxy writes, after the rule's. The plane appends the tags of the
	// CompliancePolicy of a sidecar's service, so every record of that
	// service carries them.
	ServiceTags []string `json:"serviceTags,omitempty"`
}

// Rule matches sensitive operations and says how to record them.
type Rule struct {
	// Name identifies the rule in logs.
	Name string `json:"name,omitempty"`
	// Methods lists the matched methods (upper case); empty matches all.
	Methods []string `json:"methods,omitempty"`
	// Path matches the request path (query excluded).
	Path PathMatch `json:"path"`
	// OpType is the operation recorded, e.g. FUND_TRANSFER.
	OpType string `json:"opType"`
	// Level is "info" (default), "notice" or "critical".
	Level string `json:"level,omitempty"`
	// Resource is a template for the record's resource: literal text with
	// {path.N} (the N-th path segment, from 1), {header.NAME},
	// {query.NAME} and {method}.
	Resource string `json:"resource,omitempty"`
	// FailClosed holds the request until the collector acknowledges its
	// intent record; no ack in time means 503 and nothing is forwarded.
	FailClosed bool `json:"failClosed,omitempty"`
	// Tags are compliance tags (pci, gdpr, region=eu) written into every
	// record of the rule.
	Tags []string `json:"tags,omitempty"`
	// Fields are field actions (redact, mask, hash) for this rule.
	Fields []FieldAction `json:"fields,omitempty"`
	// PII is this rule's detection of personal data (replaces the global
	// pii).
	PII *PII `json:"pii,omitempty"`
}

// PathMatch matches a path. Exactly one field is set.
type PathMatch struct {
	// Exact path.
	Exact string `json:"exact,omitempty"`
	// Prefix of the path.
	Prefix string `json:"prefix,omitempty"`
	// Pattern is a path with "*" matching one segment and a final "**"
	// matching the rest, e.g. /v1/accounts/*/transfers.
	Pattern string `json:"pattern,omitempty"`
}

// DefaultSubjectHeader is the identity-bearing header stripped from
// untrusted peers when subject.header is not set.
const DefaultSubjectHeader = "x-mw-subject"

// Subject says who performed an operation: the header when the
// authenticated peer is trusted to set it, else the peer identity, else
// "anonymous". The header is removed from requests of every other peer, so
// neither the record nor the upstream sees a subject a caller typed.
type Subject struct {
	// Header set by a trusted authentication layer (default x-mw-subject).
	Header string `json:"header,omitempty"`
	// TrustedPeers may set Header (SPIFFE ids of the authenticated mTLS
	// peer; an entry ending in "/*" trusts every id under the prefix).
	// Empty means nobody: the header is always stripped.
	TrustedPeers []string `json:"trustedPeers,omitempty"`
}

// Redact lists what is removed before a record leaves the proxy.
type Redact struct {
	// Headers are never captured, even when listed in captureHeaders.
	// authorization, cookie and proxy-authorization are always redacted.
	Headers []string `json:"headers,omitempty"`
	// BodyFields are JSON field paths (dot-separated, e.g. card.number)
	// whose values are replaced by "[REDACTED]" before the body digest.
	BodyFields []string `json:"bodyFields,omitempty"`
}

// Collector addresses the audit collector.
type Collector struct {
	// Cluster is the upstream cluster (default "mw-audit").
	Cluster string `json:"cluster,omitempty"`
	// Authority is the :authority of the requests (default: Cluster).
	Authority string `json:"authority,omitempty"`
	// Path is the ingest path (default internal/auditevent.IngestPath).
	Path string `json:"path,omitempty"`
	// Token is sent in internal/auditevent.TokenHeader.
	Token string `json:"token,omitempty"`
	// TimeoutMs bounds each batch request (default 2000).
	TimeoutMs int `json:"timeoutMs,omitempty"`
}

// Batch tunes batched delivery.
type Batch struct {
	// MaxEvents per request (default 100).
	MaxEvents int `json:"maxEvents,omitempty"`
	// FlushIntervalMs is the tick period (default 1000).
	FlushIntervalMs int `json:"flushIntervalMs,omitempty"`
	// BufferEvents bounds the records waiting in one proxy (default
	// 10000); records past it are dropped and counted in
	// mw_audit_dropped_total.
	BufferEvents int `json:"bufferEvents,omitempty"`
	// QueueName, when set, sends records through this proxy-wasm shared
	// queue so one buffer serves every instance of the VM; empty (default)
	// keeps one buffer per instance, which costs no host notification per
	// record.
	QueueName string `json:"queueName,omitempty"`
}

// ParseConfig decodes a JSON configuration strictly (unknown fields are
// errors), applies defaults and validates it.
func ParseConfig(data []byte) (*Config, error) {
	return kitconfig.Parse[Config]("audit", data)
}

// SetDefaults fills the fields whose zero value means "default".
func (c *Config) SetDefaults() {
	kitconfig.Default(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	kitconfig.Default(&c.FailClosedTimeoutMs, DefaultFailClosedTimeout)
	kitconfig.Default(&c.Collector.Cluster, meshnames.AuditClusterName)
	kitconfig.Default(&c.Collector.Authority, c.Collector.Cluster)
	kitconfig.Default(&c.Collector.Path, auditevent.IngestPath)
	kitconfig.Default(&c.Collector.TimeoutMs, DefaultCollectorTimeout)
	kitconfig.Default(&c.Batch.MaxEvents, DefaultBatchSize)
	kitconfig.Default(&c.Batch.FlushIntervalMs, DefaultFlushIntervalMs)
	kitconfig.Default(&c.Batch.BufferEvents, DefaultBufferEvents)
	for i := range c.Rules {
		if c.Rules[i].Level == "" {
			c.Rules[i].Level = string(auditevent.LevelInfo)
		}
	}
	c.setComplianceDefaults()
}

// Validate checks the configuration and names the field at fault.
func (c *Config) Validate() error {
	if len(c.Rules) == 0 {
		return fieldErr("rules", "is empty: add at least one rule, e.g. {\"methods\":[\"POST\"],\"path\":{\"prefix\":\"/v1/transfers\"},\"opType\":\"FUND_TRANSFER\"}")
	}
	for i := range c.Rules {
		if err := c.Rules[i].validate(guestfmt.Sprintf("rules[%d]", i)); err != nil {
			return err
		}
	}
	if c.Subject.Header != "" && !kitconfig.ValidHeaderName(c.Subject.Header) {
		return fieldErr("subject.header", kitconfig.HeaderNameReason, c.Subject.Header)
	}
	for i, id := range c.Subject.TrustedPeers {
		if err := kitconfig.CheckIdentity(id); err != nil {
			return fieldErr(guestfmt.Sprintf("subject.trustedPeers[%d]", i), "%v", err)
		}
	}
	if len(c.Subject.TrustedPeers) > 0 && c.Subject.Header == "" {
		return fieldErr("subject.trustedPeers", "is set without subject.header: name the header the trusted peers set")
	}
	for i, h := range c.Redact.Headers {
		if !kitconfig.ValidHeaderName(h) {
			return fieldErr(guestfmt.Sprintf("redact.headers[%d]", i), kitconfig.HeaderNameReason, h)
		}
	}
	for i, f := range c.Redact.BodyFields {
		if f == "" || strings.HasPrefix(f, ".") || strings.HasSuffix(f, ".") || strings.Contains(f, "..") {
			return fieldErr(guestfmt.Sprintf("redact.bodyFields[%d]", i), "%q is not a field path: write names joined by dots, e.g. card.number", f)
		}
	}
	for i, h := range c.CaptureHeaders {
		if !kitconfig.ValidHeaderName(h) {
			return fieldErr(guestfmt.Sprintf("captureHeaders[%d]", i), kitconfig.HeaderNameReason, h)
		}
	}
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > 16<<20 {
		return fieldErr("maxBodyBytes", "%d is out of range: use 1 to 16777216 (0 means 65536)", c.MaxBodyBytes)
	}
	if c.FailClosedTimeoutMs < 0 || c.FailClosedTimeoutMs > 60000 {
		return fieldErr("failClosedTimeoutMs", "%d is out of range: use 1 to 60000 (0 means 2000)", c.FailClosedTimeoutMs)
	}
	if err := c.validateCompliance(); err != nil {
		return err
	}
	d := kitconfig.Delivery{
		Path: c.Collector.Path, TimeoutMs: c.Collector.TimeoutMs,
		MaxItems: c.Batch.MaxEvents, MaxItemsField: "batch.maxEvents", DefaultMaxItems: DefaultBatchSize,
		FlushIntervalMs: c.Batch.FlushIntervalMs,
		BufferItems:     c.Batch.BufferEvents, BufferItemsField: "batch.bufferEvents",
	}
	return d.Validate("audit")
}

func (r *Rule) validate(p string) error {
	if r.OpType == "" {
		return fieldErr(p+".opType", "is empty: name the operation, e.g. FUND_TRANSFER")
	}
	switch auditevent.Level(r.Level) {
	case "", auditevent.LevelInfo, auditevent.LevelNotice, auditevent.LevelCritical:
	default:
		return fieldErr(p+".level", "%q is not a level: use info, notice or critical", r.Level)
	}
	for j, m := range r.Methods {
		if !kitconfig.ValidMethod(m) {
			return fieldErr(guestfmt.Sprintf("%s.methods[%d]", p, j), kitconfig.MethodReason, m)
		}
	}
	pm := r.Path
	n := 0
	for _, s := range []string{pm.Exact, pm.Prefix, pm.Pattern} {
		if s != "" {
			n++
			if !strings.HasPrefix(s, "/") {
				return fieldErr(p+".path", "%q must start with '/'", s)
			}
		}
	}
	if n != 1 {
		return fieldErr(p+".path", "must set exactly one of exact, prefix and pattern")
	}
	if pm.Pattern != "" {
		segs := strings.Split(pm.Pattern[1:], "/")
		for k, s := range segs {
			if s == "**" && k != len(segs)-1 {
				return fieldErr(p+".path.pattern", "%q: ** is allowed only as the last segment", pm.Pattern)
			}
			if s != "*" && s != "**" && strings.Contains(s, "*") {
				return fieldErr(p+".path.pattern", "%q: * must be a whole segment", pm.Pattern)
			}
		}
	}
	if _, err := ParseTemplate(r.Resource); err != nil {
		return fieldErr(p+".resource", "%v", err)
	}
	return nil
}

// fieldErr returns a kitconfig.FieldError of the audit filter.
func fieldErr(field, format string, args ...any) error {
	return kitconfig.Errorf("audit", field, format, args...)
}
