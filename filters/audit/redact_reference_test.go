package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sort"
	"strings"
	"testing"
)

// transformJSONReference is TransformJSON as it was written on
// encoding/json's tokenizer, before the guests stopped linking fmt: the
// differential test holds the guestjson version to its results.
func transformJSONReference(body []byte, paths [][]string, fn func(path int, raw []byte) []byte) ([]byte, []string, bool) {
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
				refAfterValue(&stack, inObject, &expectKey)
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
			refAfterValue(&stack, inObject, &expectKey)
			continue
		}
		if name, pi := match(); name != "" {
			start := refValueStart(body, off)
			if d, ok := tok.(json.Delim); ok {
				if err = refSkipRest(dec, d); err != nil {
					break
				}
			}
			spans = append(spans, span{start, dec.InputOffset(), pi})
			found[name] = true
			refAfterValue(&stack, inObject, &expectKey)
			continue
		}
		if d, ok := tok.(json.Delim); ok {
			inObject = append(inObject, d == '{')
			stack = append(stack, "\x00")
			expectKey = d == '{'
			continue
		}
		refAfterValue(&stack, inObject, &expectKey)
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

// refAfterValue resets the key slot once a member value is complete.
func refAfterValue(stack *[]string, inObject []bool, expectKey *bool) {
	if n := len(inObject); n > 0 && inObject[n-1] {
		(*stack)[len(*stack)-1] = "\x00"
		*expectKey = true
	}
}

// refValueStart skips the separators (whitespace, ':' and ',') between the
// previous token's end and a value.
func refValueStart(body []byte, off int64) int64 {
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

// refSkipRest consumes tokens to the end of the container opened by d.
func refSkipRest(dec *json.Decoder, d json.Delim) error {
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

// FuzzTransformJSONMatchesReference is the differential test: for any
// body and the paths the filter configurations use, TransformJSON returns
// what the encoding/json version returned.
func FuzzTransformJSONMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{"card":{"number":"4111 1111 1111 1111","exp":"12/29"},"name":"Ann"}`,
		`[{"card":{"number":1}},{"card":{"number":[1,2]}}]`,
		`{"card":{"number":{"x":1}},"card":{"number":null}}`,
		`{"a":1} {"card":{"number":2}}`, ``, ` `, `{"card":`, `{"card":{"number":"x"}`, `{"a":[1,]}`,
		`{"c\u0061rd":{"number":"esc"}}`, `{"ssn":"1","nested":{"ssn":"2"}}`, `"top"`, `{"ssn" : "1" , "x":2}`,
	} {
		f.Add([]byte(s))
	}
	paths := [][]string{{"card", "number"}, {"ssn"}, {"name"}}
	fn := func(p int, raw []byte) []byte { return []byte(`"` + strings.Repeat("*", p+1) + `"`) }
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gnames, gok := TransformJSON(body, paths, fn)
		want, wnames, wok := transformJSONReference(body, paths, fn)
		if gok != wok || !bytes.Equal(got, want) || !slices.Equal(gnames, wnames) {
			t.Errorf("TransformJSON(%q) = %q, %q, %v; the encoding/json version: %q, %q, %v", body, got, gnames, gok, want, wnames, wok)
		}
	})
}

// BenchmarkTransformJSON compares TransformJSON with its encoding/json
// version on a payment body with two redacted fields.
func BenchmarkTransformJSON(b *testing.B) {
	body := []byte(`{"payment":{"amount":125.5,"currency":"EUR","card":{"number":"4111111111111111","exp":"12/29","cvv":"123"}},` +
		`"payer":{"name":"Ann Example","iban":"DE89370400440532013000","address":{"street":"1 Main St","city":"Berlin"}},"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`)
	paths := [][]string{{"payment", "card", "number"}, {"payment", "card", "cvv"}, {"payer", "iban"}}
	fn := func(int, []byte) []byte { return []byte(Redacted) }
	for _, c := range []struct {
		name string
		f    func([]byte, [][]string, func(int, []byte) []byte) ([]byte, []string, bool)
	}{{"guestjson", TransformJSON}, {"encoding-json", transformJSONReference}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, names, ok := c.f(body, paths, fn); !ok || len(names) != 3 {
					b.Fatalf("ok %v, names %v", ok, names)
				}
			}
		})
	}
}
