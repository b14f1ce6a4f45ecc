package auditconfig

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
)

// key32 is a 32-byte test key, base64.
const key32 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

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
		{"field two targets", `{"rules":[{"opType":"X","path":{"prefix":"/"},"fields":[{"header":"x-a","body":"a","action":"mask"}]}]}`, "rules[0].fields[0]: must set exactly one"},
		{"field bad action", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"fields":[{"query":"iban","action":"encrypt"}]}`, `fields[0].action: "encrypt" is not a field action`},
		{"hash without key", `{"rules":[{"opType":"X","path":{"prefix":"/"},"fields":[{"body":"iban","action":"hash"}]}]}`, "rules[0].fields[0].action: hash needs a key"},
		{"tokenise unavailable", `{"rules":[{"opType":"X","path":{"prefix":"/"},"fields":[{"body":"pan","action":"tokenise"}]}]}`, "tokenise is not available"},
		{"keep on hash", `{"rules":[{"opType":"X","path":{"prefix":"/"},"fields":[{"body":"pan","action":"redact","keep":2}]}]}`, "rules[0].fields[0].keep: applies to mask only"},
		{"short key", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"hashKeys":[{"id":"k1","secret":"c2hvcnQ="}]}`, "hashKeys[0].secret: is 5 bytes decoded"},
		{"key not base64", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"hashKeys":[{"id":"k1","secret":"not base64 TOPSECRET"}]}`, "hashKeys[0].secret: is not standard base64"},
		{"duplicate key id", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"hashKeys":[{"id":"k1","secret":"` + key32 + `"},{"id":"k1","secret":"` + key32 + `"}]}`, `hashKeys[1].id: "k1" is used twice`},
		{"bad tag", `{"rules":[{"opType":"X","path":{"prefix":"/"},"tags":["p ci"]}]}`, `rules[0].tags[0]: "p ci" is not a tag`},
		{"pii no action", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"pii":{}}`, "pii.action: is empty"},
		{"pii bad detector", `{"rules":[{"opType":"X","path":{"prefix":"/"},"pii":{"action":"flag","detectors":["ssn"]}}]}`, `rules[0].pii.detectors[0]: "ssn" is not a detector`},
		{"pii bad regex", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"pii":{"action":"flag","patterns":[{"name":"x","regex":"(a"}]}}`, "pii.patterns[0].regex: is not a Go RE2 expression"},
		{"pii backreference", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"pii":{"action":"flag","patterns":[{"name":"x","regex":"(a)\\1"}]}}`, "pii.patterns[0].regex: is not a Go RE2 expression"},
		{"pii empty match", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"pii":{"action":"flag","patterns":[{"name":"x","regex":"a*"}]}}`, "matches the empty string"},
		{"pii scan over bound", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"maxBodyBytes":1024,"pii":{"action":"flag","maxScanBytes":2048}}`, "pii.maxScanBytes: 2048 is out of range"},
		{"pii bad scope", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"pii":{"action":"block","scan":["cookies"]}}`, `pii.scan[0]: "cookies" is not a scan scope`},
		{"pii status", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"pii":{"action":"block","blockStatus":503}}`, "pii.blockStatus: 503 is not a 4xx"},
		{"pii cleartext", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"pii":{"action":"flag","cleartext":"deny"}}`, `pii.cleartext: "deny" is not an action for PII over a plaintext hop`},
		{"service tag", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"serviceTags":["pci","no spaces"]}`, `serviceTags[1]: "no spaces" is not a tag`},
		{"trusted peers without header", `{"rules":[{"opType":"X","path":{"prefix":"/"}}],"subject":{"trustedPeers":["spiffe://a/*"]}}`, "subject.trustedPeers"},
	})
}

// TestSecretNeverInErrors: a bad key is reported without its value.
func TestSecretNeverInErrors(t *testing.T) {
	for _, cfg := range []string{
		`{"rules":[{"opType":"X","path":{"prefix":"/"}}],"hashKeys":[{"id":"k1","secret":"TOPSECRET!!"}]}`,
		`{"rules":[{"opType":"X","path":{"prefix":"/"}}],"hashKeys":[{"id":"k1","secret":"VE9QU0VDUkVU"}]}`,
	} {
		_, err := ParseConfig([]byte(cfg))
		if err == nil || strings.Contains(err.Error(), "TOPSECRET") || strings.Contains(err.Error(), "VE9QU0VDUkVU") {
			t.Errorf("error %v shows the secret (or is nil)", err)
		}
	}
}

func TestComplianceDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{"rules":[{"opType":"X","path":{"prefix":"/"},"pii":{"action":"flag"}}],"maxBodyBytes":4096,"hashKeys":[{"id":"k2","secret":"` + key32 + `"},{"id":"k1","secret":"` + key32 + `"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.RulePII(0)
	if strings.Join(p.Detectors, ",") != "card,iban,email,phone" || strings.Join(p.Scan, ",") != "body" || p.MaxScanBytes != 4096 || p.TooLarge != "flag" || p.BlockStatus != 422 {
		t.Errorf("defaults: %+v", p)
	}
	if c.CurrentKey().ID != "k2" || len(c.CurrentKey().DecodedSecret()) != 32 {
		t.Errorf("current key %q", c.CurrentKey().ID)
	}
}
