package guestjson

import (
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Unmarshal decodes data, one JSON value with only whitespace after it,
// into v (a non-nil pointer) strictly: an object key that names no field
// of the struct it is decoded into is an error, as with encoding/json's
// DisallowUnknownFields, and so is a value of the wrong type. Keys match
// fields by their json tag (or Go name), exactly or else case-insensitively
// as encoding/json matches them; null leaves a value as it was, except
// pointers, slices, maps and interfaces, which it sets to nil. Errors are
// *Error, naming the path of the value at fault.
func Unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &Error{Msg: "Unmarshal needs a non-nil pointer"}
	}
	p := parser{data: data}
	p.ws()
	if err := p.decode(rv.Elem(), ""); err != nil {
		return err
	}
	p.ws()
	if p.pos != len(data) {
		return p.syntax("trailing data after the JSON value: remove it")
	}
	return nil
}

func kindOf(c byte) string {
	switch {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	default:
		return "a number"
	}
}

func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// mismatch is the error for a value of the wrong type at p.pos, or the
// syntax error in it if it is not a valid value.
func (p *parser) mismatch(t reflect.Type, path string) error {
	at := p.pos
	if err := p.walk(nil, nil, nil); err != nil {
		return err
	}
	p.pos = at
	got := kindOf(p.data[p.pos])
	return &Error{Offset: p.pos, Path: pathOrTop(path), Msg: "want " + want(t) + ", got " + got}
}

func pathOrTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func (p *parser) decode(v reflect.Value, path string) error {
	if p.pos >= len(p.data) {
		return p.unexpected("looking for beginning of value")
	}
	c := p.data[p.pos]
	if c == 'n' {
		if err := p.literal("null"); err != nil {
			return err
		}
		switch v.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			v.SetZero()
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return p.decode(v.Elem(), path)
	case reflect.Interface:
		if v.NumMethod() != 0 {
			return &Error{Offset: p.pos, Path: pathOrTop(path), Msg: "cannot decode into " + v.Type().String()}
		}
		x, err := p.generic(path)
		if err != nil {
			return err
		}
		if x == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	case reflect.Struct:
		if c != '{' {
			return p.mismatch(v.Type(), path)
		}
		fs := fieldsOf(v.Type())
		return p.object(path, func(k string, at int) error {
			f, ok := fs.find(k)
			if !ok {
				p.pos = at
				return &Error{Offset: at, Path: pathOrTop(path), Msg: "unknown field " + strconv.Quote(k)}
			}
			return p.decode(v.FieldByIndex(f.index), join(path, f.name))
		})
	case reflect.Map:
		if c != '{' || v.Type().Key().Kind() != reflect.String {
			return p.mismatch(v.Type(), path)
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		return p.object(path, func(k string, _ int) error {
			e := reflect.New(v.Type().Elem()).Elem()
			if err := p.decode(e, join(path, k)); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
			return nil
		})
	case reflect.Slice:
		if c != '[' {
			return p.mismatch(v.Type(), path)
		}
		n := 0
		err := p.array(func() error {
			if n >= v.Cap() {
				v.Grow(1)
			}
			v.SetLen(n + 1)
			e := v.Index(n)
			e.SetZero()
			n++
			return p.decode(e, path+"["+strconv.Itoa(n-1)+"]")
		})
		if err != nil {
			return err
		}
		if n == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		} else {
			v.SetLen(n)
		}
		return nil
	case reflect.String:
		if c != '"' {
			return p.mismatch(v.Type(), path)
		}
		s, err := p.str()
		if err != nil {
			return err
		}
		v.SetString(s)
		return nil
	case reflect.Bool:
		switch c {
		case 't':
			v.SetBool(true)
			return p.literal("true")
		case 'f':
			v.SetBool(false)
			return p.literal("false")
		}
		return p.mismatch(v.Type(), path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		at := p.pos
		s, err := p.numberFor(v.Type(), path)
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return &Error{Offset: at, Path: pathOrTop(path), Msg: "want " + want(v.Type()) + " that fits " + v.Type().String() + ", got " + s}
		}
		v.SetInt(n)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		at := p.pos
		s, err := p.numberFor(v.Type(), path)
		if err != nil {
			return err
		}
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return &Error{Offset: at, Path: pathOrTop(path), Msg: "want " + want(v.Type()) + " that fits " + v.Type().String() + ", got " + s}
		}
		v.SetUint(n)
		return nil
	case reflect.Float32, reflect.Float64:
		at := p.pos
		s, err := p.numberFor(v.Type(), path)
		if err != nil {
			return err
		}
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return &Error{Offset: at, Path: pathOrTop(path), Msg: "number " + s + " does not fit " + v.Type().String()}
		}
		v.SetFloat(f)
		return nil
	}
	return &Error{Offset: p.pos, Path: pathOrTop(path), Msg: "cannot decode into " + v.Type().String()}
}

func (p *parser) numberFor(t reflect.Type, path string) (string, error) {
	if c := p.data[p.pos]; c != '-' && (c < '0' || c > '9') {
		return "", p.mismatch(t, path)
	}
	return p.number()
}

// generic decodes any value as encoding/json does into an any:
// map[string]any, []any, string, float64, bool or nil.
func (p *parser) generic(path string) (any, error) {
	switch c := p.data[p.pos]; {
	case c == '{':
		m := map[string]any{}
		err := p.object(path, func(k string, _ int) error {
			p.ws()
			if p.pos >= len(p.data) {
				return p.unexpected("looking for beginning of value")
			}
			x, err := p.generic(join(path, k))
			m[k] = x
			return err
		})
		return m, err
	case c == '[':
		a := []any{}
		err := p.array(func() error {
			if p.pos >= len(p.data) {
				return p.unexpected("looking for beginning of value")
			}
			x, err := p.generic(path + "[" + strconv.Itoa(len(a)) + "]")
			a = append(a, x)
			return err
		})
		return a, err
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		at := p.pos
		s, err := p.number()
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, &Error{Offset: at, Path: pathOrTop(path), Msg: "number " + s + " does not fit float64"}
		}
		return f, nil
	}
	return nil, p.unexpected("looking for beginning of value")
}

// object consumes an object, calling member for each key with the parser
// at the start of its value.
func (p *parser) object(path string, member func(key string, at int) error) error {
	return p.members(false, member)
}

// members consumes an object, calling member for each key (unescaped, or
// as written when raw) with the parser at the start of its value. The
// decoder and the key-path walk share it.
func (p *parser) members(raw bool, member func(key string, at int) error) error {
	if err := p.enter(); err != nil {
		return err
	}
	p.pos++ // '{'
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return nil
	}
	for {
		p.ws()
		at := p.pos
		k, err := p.string(raw)
		if err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.unexpected("after object key")
		}
		p.pos++
		p.ws()
		if err := member(k, at); err != nil {
			return err
		}
		p.ws()
		if p.pos < len(p.data) && p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.pos < len(p.data) && p.data[p.pos] == '}' {
			p.pos++
			p.depth--
			return nil
		}
		return p.unexpected("after object key:value pair")
	}
}

// array consumes an array, calling elem with the parser at each element.
func (p *parser) array(elem func() error) error {
	if err := p.enter(); err != nil {
		return err
	}
	p.pos++ // '['
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return nil
	}
	for {
		p.ws()
		if p.pos >= len(p.data) {
			return p.unexpected("looking for beginning of value")
		}
		if err := elem(); err != nil {
			return err
		}
		p.ws()
		if p.pos < len(p.data) && p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.pos < len(p.data) && p.data[p.pos] == ']' {
			p.pos++
			p.depth--
			return nil
		}
		return p.unexpected("after array element")
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type field struct {
	name  string
	index []int
}

type fields []field

// find returns the field named k, exactly or else case-insensitively.
func (fs fields) find(k string) (field, bool) {
	for _, f := range fs {
		if f.name == k {
			return f, true
		}
	}
	for _, f := range fs {
		if strings.EqualFold(f.name, k) {
			return f, true
		}
	}
	return field{}, false
}

// fieldsOf lists the decodable fields of struct type t. It is computed per
// object, not cached: configurations are decoded once per plugin start, and
// a cache would be process-wide state.
func fieldsOf(t reflect.Type) fields {
	var fs fields
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name := sf.Name
		if tag, ok := sf.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" && !strings.Contains(tag, ",") {
				continue
			}
			if n != "" {
				name = n
			}
		}
		fs = append(fs, field{name: name, index: sf.Index})
	}
	return fs
}
