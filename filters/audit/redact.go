package audit

import (
	"slices"
	"sort"
	"strings"

	"github.com/meshwarden/meshwarden/internal/guestjson"
)

// Redacted replaces a redacted JSON value.
const Redacted = `"[REDACTED]"`

// RedactJSON replaces the values at the given field paths (each a list of
// object keys from the top level) with "[REDACTED]", leaving every other byte
// of body as it was. Arrays are searched through: a path matches inside every
// element. It returns the new body, the dotted paths redacted (sorted, each
// once) and false when body is not valid JSON.
func RedactJSON(body []byte, paths [][]string) ([]byte, []string, bool) {
	return TransformJSON(body, paths, func(int, []byte) []byte { return []byte(Redacted) })
}

// TransformJSON replaces the value at each matching field path with
// fn(index of the path, the value's raw JSON), as RedactJSON does with
// "[REDACTED]". It returns the new body (body itself when nothing matched),
// the dotted paths found (sorted, each once) and false when body is not
// valid JSON — then nothing is transformed, never half of it.
func TransformJSON(body []byte, paths [][]string, fn func(path int, raw []byte) []byte) ([]byte, []string, bool) {
	type span struct {
		start, end int
		path       int
	}
	var spans []span
	var names []string
	matched := -1
	match := func(keys []string) bool {
		matched = -1
		for pi, p := range paths {
			if slices.Equal(p, keys) {
				matched = pi
				return true
			}
		}
		return false
	}
	found := func(keys []string, start, end int) {
		spans = append(spans, span{start, end, matched})
		names = append(names, strings.Join(keys, "."))
	}
	// guestjson, not encoding/json: this code runs in the guest, which
	// must not link fmt (filters/README.md).
	if !guestjson.Walk(body, match, found) {
		return nil, nil, false
	}
	if len(spans) == 0 {
		return body, nil, true
	}
	out := make([]byte, 0, len(body))
	last := 0
	for _, s := range spans {
		out = append(out, body[last:s.start]...)
		out = append(out, fn(s.path, body[s.start:s.end])...)
		last = s.end
	}
	out = append(out, body[last:]...)
	sort.Strings(names)
	return out, slices.Compact(names), true
}
