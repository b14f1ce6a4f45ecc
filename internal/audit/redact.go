package audit

import "regexp"

// tokenField matches a "token" JSON member with a string value, plain or
// escaped inside another JSON string (a filter configuration carried in a
// protobuf StringValue renders as {\"token\":\"…\"}).
var tokenField = regexp.MustCompile(`(\\*"token\\*"\s*:\s*\\*")[^"\\]*(\\*")`)

// RedactToken replaces the value of every "token" member in b (JSON, or
// JSON nested in JSON strings) with "[redacted]", so config dumps never show
// the development-only collector token.
func RedactToken(b []byte) []byte {
	return tokenField.ReplaceAll(b, []byte(`${1}[redacted]${2}`))
}
