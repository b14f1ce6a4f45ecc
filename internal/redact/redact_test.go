package redact

import (
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	for _, in := range []string{
		`{"collector":{"token":"s3cret","cluster":"mw-audit"}}`,
		`{"value":"{\"collector\":{\"token\":\"s3cret\"}}"}`,
		`{"value":"{\\\"token\\\": \\\"s3cret\\\"}"}`,
		`{"hashKeys":[{"id":"k1","secret":"s3cret"}]}`,
		`{"value":"{\"hashKeys\":[{\"id\":\"k1\",\"secret\":\"s3cret\"}]}"}`,
	} {
		out := string(Token([]byte(in)))
		if strings.Contains(out, "s3cret") || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s -> %s", in, out)
		}
	}
}
