package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"
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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type span struct {
		start, end int64
		path       int
	}
	var spans []span
	found := map[string]bool{}
	var stack []string // keys of the enclosing objects; "" for arrays
	var inObject []bool
	expectKey := false
	match := func() (string, int) {
		var keys []string
		for _, k := range stack {
			if k != "\x00" {
				keys = append(keys, k)
			}
		}
		for pi, p := range paths {
			if len(p) == len(keys) {
				ok := true
				for i := range p {
					if p[i] != keys[i] {
						ok = false
						break
					}
				}
				if ok {
					return strings.Join(p, "."), pi
				}
			}
		}
		return "", -1
	}
	// skipValue consumes one value whose first token was just read.
	var err error
	for {
		off := dec.InputOffset()
		var tok json.Token
		tok, err = dec.Token()
		if err != nil {
			break
		}
		if len(inObject) > 0 && inObject[len(inObject)-1] && expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				inObject = inObject[:len(inObject)-1]
				stack = stack[:len(stack)-1]
				expectKey = false
				afterValue(&stack, inObject, &expectKey)
				continue
			}
			k, _ := tok.(string)
			stack[len(stack)-1] = k
			expectKey = false
			continue
		}
		// tok is a value (or an array end).
		if d, ok := tok.(json.Delim); ok && (d == ']') {
			inObject = inObject[:len(inObject)-1]
			stack = stack[:len(stack)-1]
			afterValue(&stack, inObject, &expectKey)
			continue
		}
		if name, pi := match(); name != "" {
			start := valueStart(body, off)
			if d, ok := tok.(json.Delim); ok {
				if err = skipRest(dec, d); err != nil {
					break
				}
			}
			spans = append(spans, span{start, dec.InputOffset(), pi})
			found[name] = true
			afterValue(&stack, inObject, &expectKey)
			continue
		}
		if d, ok := tok.(json.Delim); ok {
			inObject = append(inObject, d == '{')
			stack = append(stack, "\x00")
			expectKey = d == '{'
			continue
		}
		afterValue(&stack, inObject, &expectKey)
	}
	if !errors.Is(err, io.EOF) || len(inObject) != 0 {
		return nil, nil, false
	}
	if len(spans) == 0 {
		return body, nil, true
	}
	out := make([]byte, 0, len(body))
	var last int64
	for _, s := range spans {
		out = append(out, body[last:s.start]...)
		out = append(out, fn(s.path, body[s.start:s.end])...)
		last = s.end
	}
	out = append(out, body[last:]...)
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	return out, names, true
}

// afterValue resets the key slot once a member value is complete.
func afterValue(stack *[]string, inObject []bool, expectKey *bool) {
	if n := len(inObject); n > 0 && inObject[n-1] {
		(*stack)[len(*stack)-1] = "\x00"
		*expectKey = true
	}
}

// valueStart skips the separators (whitespace, ':' and ',') between the
// previous token's end and a value.
func valueStart(body []byte, off int64) int64 {
	for off < int64(len(body)) {
		switch body[off] {
		case ' ', '\t', '\n', '\r', ':', ',':
			off++
		default:
			return off
		}
	}
	return off
}

// skipRest consumes tokens to the end of the container opened by d.
func skipRest(dec *json.Decoder, d json.Delim) error {
	depth := 1
	for depth > 0 {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if dd, ok := tok.(json.Delim); ok {
			if dd == '{' || dd == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}
