package traceconfig

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
)

func TestParseConfigErrors(t *testing.T) {
	kittest.ConfigErrors(t, ParseConfig, [][3]string{
		{"unknown", `{"sampler":1}`, `unknown field "sampler"`},
		{"unknown nested", `{"sampling":{"rate":1}}`, `json: sampling: unknown field "rate"`},
		{"fraction into int", `{"batch":{"flushIntervalMs":1.5}}`, "batch.flushIntervalMs: want an integer that fits int, got 1.5"},
		{"ratio", `{"sampling":{"ratio":1.5}}`, "sampling.ratio: 1.5 is out of range"},
		{"kind", `{"spanKind":"producer"}`, "spanKind"},
		{"path", `{"collector":{"path":"v1/traces"}}`, "collector.path"},
		{"interval", `{"batch":{"flushIntervalMs":1}}`, "batch.flushIntervalMs"},
	})
}
