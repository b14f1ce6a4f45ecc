package policies

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/meshwarden/meshwarden/internal/didyoumean"
)

// pos is a 1-based line and column in a policy file.
type pos struct{ line, col int }

// rawNode holds an undecoded YAML node; the decoder stores the node itself.
type rawNode struct{ ast.Node }

var (
	durationType    = reflect.TypeOf(time.Duration(0))
	rawNodeType     = reflect.TypeOf(rawNode{})
	rawMessageType  = reflect.TypeOf(json.RawMessage(nil))
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
)

// decoder turns a YAML AST into Go values strictly: unknown fields, wrong
// types, duplicate keys, anchors and aliases are errors. It never stops at the
// first error: every problem in the document is reported with its position
// and field path, and decoding carries on with the next field.
type decoder struct {
	file  string
	diags *Diagnostics
	// positions maps a field path to where its value starts, so semantic
	// checks after decoding can point at the right line.
	positions map[string]pos
	// failed records the paths already reported as errors, so later checks
	// do not pile consequential errors on top.
	failed map[string]bool
	// lineOffset is added to every reported line: the document was parsed
	// from a chunk of the file that starts after lineOffset lines.
	lineOffset int
}

func newDecoder(file string, diags *Diagnostics) *decoder {
	return &decoder{file: file, diags: diags, positions: map[string]pos{}, failed: map[string]bool{}}
}

func nodePos(n ast.Node) pos {
	switch v := n.(type) {
	case nil:
		return pos{}
	case *ast.MappingNode:
		if len(v.Values) > 0 {
			return nodePos(v.Values[0])
		}
	case *ast.MappingValueNode:
		return nodePos(v.Key)
	case *ast.DocumentNode:
		return nodePos(v.Body)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return pos{}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

func (d *decoder) report(sev Severity, p pos, path, format string, a ...any) {
	if sev == SeverityError {
		d.failed[path] = true
	}
	if p.line > 0 {
		p.line += d.lineOffset
	}
	d.diags.add(Diagnostic{Severity: sev, File: d.file, Line: p.line, Column: p.col, Path: path, Message: fmt.Sprintf(format, a...)})
}

func (d *decoder) errAt(n ast.Node, path, format string, a ...any) {
	d.report(SeverityError, nodePos(n), path, format, a...)
}

// failedUnder reports whether an error was reported at path or below it.
func (d *decoder) failedUnder(path string) bool {
	for p := range d.failed {
		if p == path || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
			return true
		}
	}
	return false
}

// at returns the recorded position of path, or of its nearest recorded parent.
func (d *decoder) at(path string) pos {
	for {
		if p, ok := d.positions[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return d.positions[""]
		}
		path = path[:i]
	}
}

// errPath reports an error at the recorded position of path.
func (d *decoder) errPath(path, format string, a ...any) {
	d.report(SeverityError, d.at(path), path, format, a...)
}

// warnPath reports a warning at the recorded position of path.
func (d *decoder) warnPath(path, format string, a ...any) {
	d.report(SeverityWarning, d.at(path), path, format, a...)
}

// unwrap removes anchors and rejects aliases, tags and merge keys, which make
// a policy harder to read than it needs to be.
func (d *decoder) unwrap(n ast.Node, path string) (ast.Node, bool) {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			d.errAt(n, path, "aliases (*%s) are not supported: write the value out in full", v.Value)
			return nil, false
		case *ast.TagNode:
			d.errAt(n, path, "YAML tags (%s) are not supported: remove the tag; quote the value if it must be a string", v.Start.Value)
			return nil, false
		case *ast.CommentGroupNode:
			return nil, true
		default:
			return n, true
		}
	}
}

func childPath(path, key string) string {
	ident := key != ""
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			ident = false
			break
		}
	}
	if !ident {
		key = "[" + strconv.Quote(key) + "]"
		return path + key
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// describeNode names what the user wrote, for "expected X, got Y" messages.
func describeNode(n ast.Node) string {
	switch v := n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode:
		return fmt.Sprintf("the text %q", v.Value)
	case *ast.LiteralNode:
		return "a block of text"
	case *ast.IntegerNode:
		return "the number " + v.GetToken().Value
	case *ast.FloatNode:
		return "the number " + v.GetToken().Value
	case *ast.BoolNode:
		return "the boolean " + v.GetToken().Value
	case *ast.NullNode:
		return "null"
	case *ast.InfinityNode, *ast.NanNode:
		return "the number " + n.GetToken().Value
	}
	return "a " + strings.ToLower(n.Type().String())
}

// describeType names what a field expects.
func describeType(t reflect.Type) string {
	if t == durationType {
		return `a duration such as "15s" or "2m30s"`
	}
	if t.Kind() == reflect.Pointer {
		return describeType(t.Elem())
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping (key: value)"
	}
	return t.String()
}

// decode decodes n into v (settable) at path.
func (d *decoder) decode(n ast.Node, v reflect.Value, path string) {
	n, ok := d.unwrap(n, path)
	if !ok || n == nil {
		return
	}
	d.positions[path] = nodePos(n)
	t := v.Type()
	if t == rawNodeType {
		v.Set(reflect.ValueOf(rawNode{n}))
		return
	}
	if _, null := n.(*ast.NullNode); null {
		return // an empty value leaves the zero value, as if the key were absent
	}
	if d.decodeSpecial(n, v, path) {
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		e := reflect.New(t.Elem())
		d.decode(n, e.Elem(), path)
		v.Set(e)
	case reflect.Interface:
		if g := d.generic(n, path); g != nil {
			v.Set(reflect.ValueOf(g))
		}
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.String:
		d.decodeString(n, v, path)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.errAt(n, path, "expected true or false, got %s", describeNode(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.decodeInt(n, v, path)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.decodeUint(n, v, path)
	case reflect.Float32, reflect.Float64:
		d.decodeFloat(n, v, path)
	default:
		d.errAt(n, path, "internal: cannot decode into %s", t)
	}
}

// decodeSpecial decodes the types that have their own syntax (durations,
// raw JSON, text and JSON unmarshalers) and reports whether v was one.
func (d *decoder) decodeSpecial(n ast.Node, v reflect.Value, path string) bool {
	t := v.Type()
	switch {
	case t == durationType:
		d.decodeDuration(n, v, path)
	case t == rawMessageType:
		b, err := json.Marshal(d.generic(n, path))
		if err != nil {
			d.errAt(n, path, "cannot convert to JSON: %v", err)
			return true
		}
		v.SetBytes(b)
	case reflect.PointerTo(t).Implements(textUnmarshaler) && t.Kind() != reflect.Struct:
		s, ok := scalarString(n)
		if !ok {
			d.errAt(n, path, "expected a string, got %s", describeNode(n))
			return true
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.errAt(n, path, "%v", err)
		}
	case reflect.PointerTo(t).Implements(jsonUnmarshaler):
		b, err := json.Marshal(d.generic(n, path))
		if err == nil {
			err = v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b)
		}
		if err != nil {
			d.errAt(n, path, "%v", err)
		}
	default:
		return false
	}
	return true
}

// decodeDuration decodes a time.Duration written with a unit, e.g. "15s".
func (d *decoder) decodeDuration(n ast.Node, v reflect.Value, path string) {
	s, ok := n.(*ast.StringNode)
	if !ok {
		d.errAt(n, path, "expected %s, got %s: give a number with a unit, e.g. \"%ss\"", describeType(v.Type()), describeNode(n), n.GetToken().Value)
		return
	}
	dur, err := time.ParseDuration(s.Value)
	if err != nil {
		d.errAt(n, path, "%q is not a duration: use a number with a unit (ms, s, m, h), e.g. \"15s\"", s.Value)
		return
	}
	if dur < 0 {
		d.errAt(n, path, "duration %q is negative: give a positive duration", s.Value)
		return
	}
	v.SetInt(int64(dur))
}

// decodeSlice decodes a YAML sequence into a slice.
func (d *decoder) decodeSlice(n ast.Node, v reflect.Value, path string) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.errAt(n, path, "expected a list, got %s: start each item on its own line with \"- \"", describeNode(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		d.decode(item, s.Index(i), indexPath(path, i))
	}
	v.Set(s)
}

// decodeString decodes a string; a number or boolean must be quoted.
func (d *decoder) decodeString(n ast.Node, v reflect.Value, path string) {
	switch s := n.(type) {
	case *ast.StringNode:
		v.SetString(s.Value)
	case *ast.LiteralNode:
		v.SetString(s.Value.Value)
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		d.errAt(n, path, "expected a string, got %s: quote it, e.g. \"%s\"", describeNode(n), n.GetToken().Value)
	default:
		d.errAt(n, path, "expected a string, got %s", describeNode(n))
	}
}

// decodeInt decodes a signed integer that fits v.
func (d *decoder) decodeInt(n ast.Node, v reflect.Value, path string) {
	i, ok := n.(*ast.IntegerNode)
	if !ok {
		d.errAt(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	var x int64
	switch val := i.Value.(type) {
	case int64:
		x = val
	case uint64:
		if val > math.MaxInt64 {
			d.errAt(n, path, "%d is too large for this field", val)
			return
		}
		x = int64(val)
	}
	if v.OverflowInt(x) {
		d.errAt(n, path, "%d is out of range for this field", x)
		return
	}
	v.SetInt(x)
}

// decodeUint decodes an unsigned integer that fits v.
func (d *decoder) decodeUint(n ast.Node, v reflect.Value, path string) {
	i, ok := n.(*ast.IntegerNode)
	if !ok {
		d.errAt(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	var x uint64
	switch val := i.Value.(type) {
	case int64:
		if val < 0 {
			d.errAt(n, path, "%d is negative: give a number of 0 or more", val)
			return
		}
		x = uint64(val)
	case uint64:
		x = val
	}
	if v.OverflowUint(x) {
		d.errAt(n, path, "%d is out of range for this field", x)
		return
	}
	v.SetUint(x)
}

// decodeFloat decodes a number, integer or not.
func (d *decoder) decodeFloat(n ast.Node, v reflect.Value, path string) {
	switch f := n.(type) {
	case *ast.FloatNode:
		v.SetFloat(f.Value)
	case *ast.IntegerNode:
		switch val := f.Value.(type) {
		case int64:
			v.SetFloat(float64(val))
		case uint64:
			v.SetFloat(float64(val))
		}
	default:
		d.errAt(n, path, "expected a number, got %s", describeNode(n))
	}
}

func scalarString(n ast.Node) (string, bool) {
	switch s := n.(type) {
	case *ast.StringNode:
		return s.Value, true
	case *ast.LiteralNode:
		return s.Value.Value, true
	}
	return "", false
}

// mapEntries checks that n is a mapping with string keys and no duplicates
// and returns its entries.
func (d *decoder) mapEntries(n ast.Node, path, want string) ([]*ast.MappingValueNode, bool) {
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		d.errAt(n, path, "expected %s, got %s", want, describeNode(n))
		return nil, false
	}
	seen := map[string]pos{}
	out := values[:0:0]
	for _, mv := range values {
		if mv.Key.IsMergeKey() {
			d.errAt(mv.Key, path, "merge keys (<<) are not supported: write the fields out in full")
			continue
		}
		key, ok := keyString(mv.Key)
		if !ok {
			d.errAt(mv.Key, path, "keys must be plain text, got %s", describeNode(mv.Key))
			continue
		}
		if first, dup := seen[key]; dup {
			d.errAt(mv.Key, childPath(path, key), "duplicate key %q (first at line %d): keep only one", key, first.line+d.lineOffset)
			continue
		}
		seen[key] = nodePos(mv.Key)
		out = append(out, mv)
	}
	return out, true
}

func keyString(k ast.MapKeyNode) (string, bool) {
	switch s := ast.Node(k).(type) {
	case *ast.StringNode:
		return s.Value, true
	case *ast.MappingKeyNode:
		if s.Value != nil {
			if str, ok := s.Value.(*ast.StringNode); ok {
				return str.Value, true
			}
		}
	}
	return "", false
}

func (d *decoder) decodeMap(n ast.Node, v reflect.Value, path string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.errAt(n, path, "internal: map keys of %s are not strings", t)
		return
	}
	entries, ok := d.mapEntries(n, path, "a mapping (key: value)")
	if !ok {
		return
	}
	m := reflect.MakeMapWithSize(t, len(entries))
	for _, mv := range entries {
		key, _ := keyString(mv.Key)
		p := childPath(path, key)
		d.positions[p] = nodePos(mv.Key)
		e := reflect.New(t.Elem()).Elem()
		d.decode(mv.Value, e, p)
		m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), e)
	}
	v.Set(m)
}

// field is one decodable struct field, by its JSON name.
type field struct {
	name  string
	index []int
}

// structFields lists t's fields by JSON name, with embedded structs inlined.
func structFields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for _, sub := range structFields(ft) {
					sub.index = append([]int{i}, sub.index...)
					out = append(out, sub)
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, field{name: name, index: []int{i}})
	}
	return out
}

func (d *decoder) decodeStruct(n ast.Node, v reflect.Value, path string) {
	entries, ok := d.mapEntries(n, path, "a mapping (key: value)")
	if !ok {
		return
	}
	fields := structFields(v.Type())
	byName := make(map[string]field, len(fields))
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		byName[f.name] = f
		names = append(names, f.name)
	}
	sort.Strings(names)
	for _, mv := range entries {
		key, _ := keyString(mv.Key)
		p := childPath(path, key)
		f, known := byName[key]
		if !known {
			msg := fmt.Sprintf("unknown field %q", key)
			if s := suggest(key, names); s != "" {
				msg += fmt.Sprintf(": did you mean %q?", s)
			} else {
				msg += ": remove it"
			}
			msg += " (allowed: " + strings.Join(names, ", ") + ")"
			d.errAt(mv.Key, p, "%s", msg)
			continue
		}
		d.positions[p] = nodePos(mv.Key)
		fv := v
		for _, i := range f.index {
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					fv.Set(reflect.New(fv.Type().Elem()))
				}
				fv = fv.Elem()
			}
			fv = fv.Field(i)
		}
		d.decode(mv.Value, fv, p)
	}
}

// generic converts n to plain Go values (map[string]any, []any, string,
// int64, uint64, float64, bool, nil), reporting unsupported constructs.
func (d *decoder) generic(n ast.Node, path string) any {
	n, ok := d.unwrap(n, path)
	if !ok || n == nil {
		return nil
	}
	switch v := n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		entries, _ := d.mapEntries(n, path, "a mapping")
		m := make(map[string]any, len(entries))
		for _, mv := range entries {
			key, _ := keyString(mv.Key)
			p := childPath(path, key)
			d.positions[p] = nodePos(mv.Key)
			m[key] = d.generic(mv.Value, p)
		}
		return m
	case *ast.SequenceNode:
		s := make([]any, len(v.Values))
		for i, item := range v.Values {
			s[i] = d.generic(item, indexPath(path, i))
		}
		return s
	case *ast.LiteralNode:
		return v.Value.Value
	case *ast.InfinityNode, *ast.NanNode:
		d.errAt(n, path, "%s is not a finite number", n.GetToken().Value)
		return nil
	case ast.ScalarNode:
		return v.GetValue()
	}
	d.errAt(n, path, "unsupported YAML construct: %s", describeNode(n))
	return nil
}

// suggest returns the allowed name closest to key, if it is close enough to
// be a likely typo.
func suggest(key string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return n
		}
		if dist := didyoumean.Distance(strings.ToLower(key), strings.ToLower(n)); dist < bestD {
			best, bestD = n, dist
		}
	}
	return best
}

// newOf returns a pointer to a new zero value of t.
func newOf(t reflect.Type) any { return reflect.New(t).Interface() }

// source returns "file:line" of the value at path, for IR Source fields.
func (d *decoder) source(path string) string {
	p := d.at(path)
	return fmt.Sprintf("%s:%d", d.file, p.line+d.lineOffset)
}
