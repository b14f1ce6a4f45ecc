// Package redact hides secrets in what the plane and the gateway print.
// It is kept out of internal/auditevent, which the wasm filters import, so the
// filters do not link the regexp engine.
package redact

import "regexp"

// tokenField matches a "token" or "secret" JSON member with a string value,
// plain or escaped inside another JSON string (a filter configuration
// carried in a protobuf StringValue renders as {\"token\":\"…\"}).
const tokenField = `(\\*"(?:token|secret)\\*"\s*:\s*\\*")[^"\\]*(\\*")`

// Token replaces the value of every "token" and "secret" member in b (JSON,
// or JSON nested in JSON strings) with "[redacted]", so config dumps never
// show the development-only audit collector token nor the audit filter's
// HMAC keys (hashKeys[].secret). Dumps are rare, so the pattern is compiled
// per call rather than held in a package variable.
func Token(b []byte) []byte {
	return regexp.MustCompile(tokenField).ReplaceAll(b, []byte(`${1}[redacted]${2}`))
}
