// Package traceconfig is the configuration of the trace filter
// (filters/trace): its schema, defaults, strict parsing and validation. It
// imports no ABI package, so the policy loader and the control plane decode
// and validate the same type the filter runs with, without linking guest
// code.
package traceconfig

import (
	"github.com/meshwarden/meshwarden/filters/kit/kitconfig"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// Defaults applied by SetDefaults.
const (
	DefaultPath            = "/v1/traces"
	DefaultServiceName     = "meshwarden-proxy"
	DefaultBatchSize       = 128
	DefaultFlushIntervalMs = 1000
	DefaultBufferSpans     = 4096
	DefaultTimeoutMs       = 2000
)

// Config is the trace filter's configuration (the plugin configuration in
// Envoy and the gateway, and the `spec:` of a trace policy).
type Config struct {
	// ServiceName is the OTLP resource attribute service.name (default
	// "meshwarden-proxy").
	ServiceName string `json:"serviceName,omitempty"`
	// SpanKind is "server" (default, ingress) or "client" (egress).
	SpanKind string `json:"spanKind,omitempty"`
	// Sampling decides which new traces are recorded.
	Sampling Sampling `json:"sampling,omitempty"`
	// Collector is the OTLP/HTTP endpoint.
	Collector Collector `json:"collector,omitempty"`
	// Batch tunes span export.
	Batch Batch `json:"batch,omitempty"`
	// AcceptB3 reads B3 (single "b3" and multi X-B3-*) headers when no valid
	// traceparent arrives (default true; set false to ignore B3).
	AcceptB3 *bool `json:"acceptB3,omitempty"`
	// PropagateB3 also writes the B3 single header downstream.
	PropagateB3 bool `json:"propagateB3,omitempty"`
	// DisableExport propagates context but sends no spans.
	DisableExport bool `json:"disableExport,omitempty"`
}

// Sampling is parent-based with a ratio for roots: a request with a valid
// parent follows the parent's sampled flag; a new trace is sampled with
// probability Ratio.
type Sampling struct {
	// Ratio for new traces, 0 to 1 (default 1 when Sampling is omitted).
	Ratio *float64 `json:"ratio,omitempty"`
	// IgnoreParent applies Ratio to every request, parent or not.
	IgnoreParent bool `json:"ignoreParent,omitempty"`
}

// Collector addresses the OTLP/HTTP collector.
type Collector struct {
	// Cluster is the upstream cluster (default "mw-otlp").
	Cluster string `json:"cluster,omitempty"`
	// Authority is the :authority of the requests (default: Cluster).
	Authority string `json:"authority,omitempty"`
	// Path is the OTLP traces path (default /v1/traces).
	Path string `json:"path,omitempty"`
	// TimeoutMs bounds each export (default 2000).
	TimeoutMs int `json:"timeoutMs,omitempty"`
}

// Batch tunes span export.
type Batch struct {
	// MaxSpans per export request (default 128).
	MaxSpans int `json:"maxSpans,omitempty"`
	// FlushIntervalMs is the tick period (default 1000).
	FlushIntervalMs int `json:"flushIntervalMs,omitempty"`
	// BufferSpans bounds the spans waiting in one proxy (default 4096);
	// spans past it are dropped and counted in mw_trace_dropped_total.
	BufferSpans int `json:"bufferSpans,omitempty"`
	// QueueName, when set, sends spans through this proxy-wasm shared
	// queue so one buffer serves every instance of the VM; empty (default)
	// keeps one buffer per instance, which costs no host notification per
	// span.
	QueueName string `json:"queueName,omitempty"`
}

// ParseConfig decodes a JSON configuration strictly (unknown fields are
// errors), applies defaults and validates it. Empty input is the default
// configuration.
func ParseConfig(data []byte) (*Config, error) {
	return kitconfig.Parse[Config]("trace", data)
}

// SetDefaults fills the fields whose zero value means "default".
func (c *Config) SetDefaults() {
	kitconfig.Default(&c.ServiceName, DefaultServiceName)
	kitconfig.Default(&c.SpanKind, "server")
	if c.Sampling.Ratio == nil {
		one := 1.0
		c.Sampling.Ratio = &one
	}
	kitconfig.Default(&c.Collector.Cluster, meshnames.OTLPClusterName)
	kitconfig.Default(&c.Collector.Authority, c.Collector.Cluster)
	kitconfig.Default(&c.Collector.Path, DefaultPath)
	kitconfig.Default(&c.Collector.TimeoutMs, DefaultTimeoutMs)
	kitconfig.Default(&c.Batch.MaxSpans, DefaultBatchSize)
	kitconfig.Default(&c.Batch.FlushIntervalMs, DefaultFlushIntervalMs)
	kitconfig.Default(&c.Batch.BufferSpans, DefaultBufferSpans)
	if c.AcceptB3 == nil {
		t := true
		c.AcceptB3 = &t
	}
}

// Validate checks the configuration and names the field at fault.
func (c *Config) Validate() error {
	if c.SpanKind != "" && c.SpanKind != "server" && c.SpanKind != "client" {
		return fieldErr("spanKind", "%q is not a span kind: use server or client", c.SpanKind)
	}
	if r := c.Sampling.Ratio; r != nil && !(*r >= 0 && *r <= 1) {
		return fieldErr("sampling.ratio", "%v is out of range: use 0 to 1, e.g. 0.1 for 10%%", *r)
	}
	d := kitconfig.Delivery{
		Path: c.Collector.Path, TimeoutMs: c.Collector.TimeoutMs,
		MaxItems: c.Batch.MaxSpans, MaxItemsField: "batch.maxSpans", DefaultMaxItems: DefaultBatchSize,
		FlushIntervalMs: c.Batch.FlushIntervalMs,
		BufferItems:     c.Batch.BufferSpans, BufferItemsField: "batch.bufferSpans",
	}
	return d.Validate("trace")
}

// fieldErr returns a kitconfig.FieldError of the trace filter.
func fieldErr(field, format string, args ...any) error {
	return kitconfig.Errorf("trace", field, format, args...)
}
