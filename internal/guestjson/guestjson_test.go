package guestjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/guestjson"
)

// shape has every kind of field the filter configurations use.
type inner struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags,omitempty"`
	Count int      `json:"count"`
}

type shape struct {
	S       string            `json:"s"`
	B       bool              `json:"b,omitempty"`
	I       int               `json:"i"`
	U       uint32            `json:"u"`
	I8      int8              `json:"i8"`
	F       *float64          `json:"f,omitempty"`
	In      inner             `json:"in"`
	P       *inner            `json:"p"`
	L       []inner           `json:"l"`
	SS      []string          `json:"ss"`
	M       map[string]string `json:"m"`
	A       any               `json:"a"`
	Skip    string            `json:"-"`
	Dash    string            `json:"-,"`
	NoTag   string
	private string
}

var seeds = []string{
	`{}`, `{"s":"x","b":true,"i":-3,"u":7,"f":1.5,"in":{"name":"n","tags":["a","b"],"count":2}}`,
	`{"p":{"name":"q"},"l":[{"name":"a"},{"count":1}],"ss":[],"m":{"k":"v"},"a":[1,"x",null,{"y":false}]}`,
	`{"S":"case","NOTAG":"n","notag":"m","-":"dash"}`, `{"Skip":"x"}`, `{"private":"x"}`,
	`{"unknown":1}`, `{"in":{"nope":1}}`, `{"i":1.5}`, `{"i":"1"}`, `{"u":-1}`, `{"i8":200}`, `{"f":1e400}`,
	`{"s":null,"p":null,"l":null,"ss":null,"m":null}`, `{"s":"\u00e9\ud83d\ude00\ud800x\\\/\b\f\n\r\t"}`,
	`{"s":"a"} `, `{"s":"a"} x`, `{"s":"a"}{}`, `[1]`, `"str"`, `null`, ``, ` `, `{"s":"a",}`, `{"s" "a"}`,
	`{"s":"` + "\xff\xfe" + `"}`, `{"s":"` + "\x01" + `"}`, `{"s":"\x"}`, `{"i":01}`, `{"i":-}`, `{"i":1.}`,
	`{"i":1e}`, `{"b":tru}`, `{"a":[[[[]]]]}`, `{"l":[{"name":"a"},]}`, `{"m":{"a":1}}`, `{"u":4294967296}`,
	`{"s":"a","s":"b"}`, `{"p":{"name":"a"},"p":{"count":2}}`, `{"ss":["a"],"ss":["b","c"]}`,
	`{"a":1e400}`, `{"a":{"k":1}}`, "\t{\n\"i\"\r:\n2}\n",
}

// TestValidMatchesEncodingJSON and the fuzz tests below are the
// differential tests against encoding/json.
func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, s := range seeds {
		if got, want := guestjson.Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", s, got, want)
		}
	}
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	if guestjson.Valid([]byte(deep)) {
		t.Errorf("Valid accepts nesting deeper than 10000")
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := guestjson.Valid(b), json.Valid(b); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// stdDecode decodes as kitconfig did with encoding/json: strictly, and
// with nothing but whitespace after the value.
func stdDecode(b []byte, v any) error {
	if !json.Valid(b) {
		return errors.New("invalid")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func compare(t *testing.T, b []byte) {
	t.Helper()
	var got, want shape
	gerr := guestjson.Unmarshal(b, &got)
	werr := stdDecode(b, &want)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("Unmarshal(%q): error %v, encoding/json's %v", b, gerr, werr)
	}
	if gerr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Unmarshal(%q):\n got %+v\nwant %+v", b, got, want)
	}
	if gerr != nil && !guestjson.Valid(b) && errors.Is(gerr, guestjson.ErrSyntax) != strings.Contains(gerr.Error(), "(at byte") {
		t.Fatalf("Unmarshal(%q) = %v: a syntax error says where it is", b, gerr)
	}
}

func TestUnmarshalMatchesEncodingJSON(t *testing.T) {
	for _, s := range seeds {
		compare(t, []byte(s))
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { compare(t, b) })
}

// TestUnmarshalErrorsNameThePath checks the messages a user reads.
func TestUnmarshalErrorsNameThePath(t *testing.T) {
	for in, want := range map[string]string{
		`{"l":[{"name":"a"},{"nme":"b"}]}`: `json: l[1]: unknown field "nme"`,
		`{"in":{"count":"2"}}`:             `json: in.count: want an integer, got a string`,
		`{"i8":300}`:                       `json: i8: want an integer that fits int8, got 300`,
		`{"s":1}`:                          `json: s: want a string, got a number`,
		`[]`:                               `json: (top level): want an object, got an array`,
		`{"s":"a"} {}`:                     `json: trailing data after the JSON value: remove it (at byte 10)`,
		`{"s":"a"`:                         `json: unexpected end of input after object key:value pair (at byte 8)`,
		`{'s':1}`:                          `json: invalid character '\'' looking for beginning of string (at byte 1)`,
	} {
		var v shape
		err := guestjson.Unmarshal([]byte(in), &v)
		if err == nil || err.Error() != want {
			t.Errorf("Unmarshal(%s) = %v, want %s", in, err, want)
		}
	}
}

func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`"a"`, `"\u00e9"`, `"\ud83d\ude00"`, `"\ud800"`, `"\ud800\u0041"`, `"` + "\xff" + `"`, `"\q"`, `"a`, `"a"b`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := guestjson.Unquote(b)
		var want string
		werr := json.Unmarshal(b, &want)
		wok := werr == nil && len(b) > 0 && b[0] == '"' && bytes.Equal(bytes.TrimSpace(b), b)
		if ok != wok || got != want && ok {
			t.Errorf("Unquote(%q) = %q, %v; encoding/json: %q, %v", b, got, ok, want, werr)
		}
	})
}

// TestWalk finds values by key path through arrays, with their spans,
// and refuses invalid input.
func TestWalk(t *testing.T) {
	body := `{"a":{"b":[1,{"c":"x"}]},"c":[{"c":2},{"c":{"d":1}}]} [{"c":3}]`
	var spans []string
	ok := guestjson.Walk([]byte(body), func(keys []string) bool {
		return len(keys) > 0 && keys[len(keys)-1] == "c"
	}, func(keys []string, start, end int) {
		spans = append(spans, strings.Join(keys, ".")+"="+body[start:end])
	})
	want := []string{`a.b.c="x"`, `c=[{"c":2},{"c":{"d":1}}]`, `c=3`}
	if !ok || !reflect.DeepEqual(spans, want) {
		t.Errorf("Walk: %v, %v; want %v", ok, spans, want)
	}
	for _, bad := range []string{`{"a":}`, `[1,]`, `{"a":1}}`, `"x`} {
		if guestjson.Walk([]byte(bad), func([]string) bool { return false }, nil) {
			t.Errorf("Walk(%s) accepted invalid JSON", bad)
		}
	}
}
