package auditconfig

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
)

func TestParseConfigErrors(t *testing.T) {
	kittest.ConfigErrors(t, ParseConfig, [][3]string{
		{"no rules", `{}`, "rules: is empty"},
		{"unknown field", `{"rules":[], "extra":1}`, `unknown field "extra"`},
		{"no op type", `{"rules":[{"path":{"prefix":"/"}}]}`, "rules[0].opType: is empty"},
		{"two path kinds", `{"rules":[{"opType":"X","path":{"prefix":"/","exact":"/a"}}]}`, "rules[0].path: must set exactly one"},
		{"bad pattern", `{"rules":[{"opType":"X","path":{"pattern":"/a/**/b"}}]}`, "rules[0].path.pattern"},
		{"bad level", `{"rules":[{"opType":"X","level":"loud","path":{"prefix":"/"}}]}`, "rules[0].level"},
		{"bad template", `{"rules":[{"opType":"X","path":{"prefix":"/"},"resource":"a/{path.x}"}]}`, "rules[0].resource"},
		{"unknown var", `{"rules":[{"opType":"X","path":{"prefix":"/"},"resource":"{user}"}]}`, "rules[0].resource: {user} is not a template variable"},
		{"bad body field", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"redact":{"bodyFields":["a..b"]}}`, "redact.bodyFields[0]"},
		{"buffer below batch", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"batch":{"maxEvents":50,"bufferEvents":10}}`, "batch.bufferEvents"},
		{"trusted peers without header", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"subject":{"trustedPeers":["spiffe://a/*"]}}`, "subject.trustedPeers"},
	})
}
