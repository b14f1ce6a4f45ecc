package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/meshwarden/meshwarden/filters"
)

// fieldDocs reads the doc comments of the struct fields in the Go files
// whose types the schemas describe.
func fieldDocs(t *testing.T) FieldDocs {
	t.Helper()
	const mod = "github.com/meshwarden/meshwarden/"
	docs := FieldDocs{}
	for pkg, files := range map[string][]string{
		"policies":                  {"types.go"},
		"filters/dye/dyeconfig":     {"../filters/dye/dyeconfig/dyeconfig.go"},
		"filters/audit/auditconfig": {"../filters/audit/auditconfig/auditconfig.go"},
		"filters/trace/traceconfig": {"../filters/trace/traceconfig/traceconfig.go"},
	} {
		for _, file := range files {
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return false
				}
				for _, fl := range st.Fields.List {
					if fl.Doc == nil {
						continue
					}
					text := strings.Join(strings.Fields(fl.Doc.Text()), " ")
					for _, name := range fl.Names {
						docs[mod+pkg+"."+ts.Name.Name+"."+name.Name] = text
					}
				}
				return false
			})
		}
	}
	return docs
}

// TestSchemaInSync regenerates every schema from the Go types and compares
// it with the published file: a field added to a spec or a filter Config
// without regenerating (go test ./policies -run Schema -update) fails here.
func TestSchemaInSync(t *testing.T) {
	docs := fieldDocs(t)
	for _, k := range Kinds() {
		t.Run(k, func(t *testing.T) {
			got, err := JSONSchema(k, docs)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("schema", strings.ToLower(k)+".json"), got)
		})
	}
	t.Run("policy", func(t *testing.T) {
		got, err := PolicyJSONSchema(docs)
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, filepath.Join("schema", "policy.json"), got)
	})
}

// TestSchemaCoversGoFields walks each spec type and checks that every field
// the decoder accepts appears in the schema with a matching JSON type, so the
// schema cannot drift from the types even if the files were edited by hand.
func TestSchemaCoversGoFields(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(k, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("schema", strings.ToLower(k)+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var s map[string]any
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			spec := s["properties"].(map[string]any)["spec"].(map[string]any)
			compareType(t, "spec", SpecType(k), spec)
		})
	}
	// The FilterRelease enum is the one filter list.
	var rel map[string]any
	b, _ := os.ReadFile("schema/filterrelease.json")
	if err := json.Unmarshal(b, &rel); err != nil {
		t.Fatal(err)
	}
	enum := rel["properties"].(map[string]any)["spec"].(map[string]any)["properties"].(map[string]any)["filter"].(map[string]any)["enum"]
	var got []string
	for _, e := range enum.([]any) {
		got = append(got, e.(string))
	}
	if !reflect.DeepEqual(got, filters.Order()) {
		t.Errorf("FilterRelease spec.filter enum = %v, want filters.Order() = %v", got, filters.Order())
	}
}

func compareType(t *testing.T, path string, typ reflect.Type, s map[string]any) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	want := map[reflect.Kind]string{
		reflect.String: "string", reflect.Bool: "boolean", reflect.Slice: "array", reflect.Map: "object", reflect.Struct: "object",
		reflect.Int: "integer", reflect.Int64: "integer", reflect.Int32: "integer", reflect.Uint32: "integer", reflect.Uint64: "integer",
		reflect.Float64: "number",
	}[typ.Kind()]
	if typ == durationType {
		want = "string"
	}
	if got, _ := s["type"].(string); got != want {
		t.Errorf("%s: schema type %q, Go type %s wants %q", path, got, typ, want)
		return
	}
	switch typ.Kind() {
	case reflect.Slice:
		compareType(t, path+"[]", typ.Elem(), s["items"].(map[string]any))
	case reflect.Map:
		compareType(t, path+".*", typ.Elem(), s["additionalProperties"].(map[string]any))
	case reflect.Struct:
		if typ == durationType {
			return
		}
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false {
			t.Errorf("%s: schema allows unknown fields, the decoder does not", path)
		}
		var goNames []string
		for _, f := range structFields(typ) {
			goNames = append(goNames, f.name)
			fs, ok := props[f.name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: field of %s missing from the schema", path, f.name, typ)
				continue
			}
			compareType(t, path+"."+f.name, typ.FieldByIndex(f.index).Type, fs)
		}
		if len(props) != len(goNames) {
			names := slices.Sorted(maps.Keys(props))
			sort.Strings(goNames)
			t.Errorf("%s: schema fields %v, Go fields %v", path, names, goNames)
		}
	}
}

// validate is a small JSON Schema checker for the keywords the generated
// schemas use: type, properties, additionalProperties, required, items,
// const, enum, pattern, minimum, maximum, allOf, if/then and local $ref.
func validate(root, s map[string]any, v any, path string) []string {
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, a...)) }
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		return validate(root, root["$defs"].(map[string]any)[name].(map[string]any), v, path)
	}
	if c, ok := s["const"]; ok && !reflect.DeepEqual(c, v) {
		fail("want %v, got %v", c, v)
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, x := range e {
			if reflect.DeepEqual(x, v) {
				found = true
			}
		}
		if !found {
			fail("%v not in %v", v, e)
		}
	}
	if typ, ok := s["type"].(string); ok {
		okType := false
		switch typ {
		case "object":
			_, okType = v.(map[string]any)
		case "array":
			_, okType = v.([]any)
		case "string":
			_, okType = v.(string)
		case "boolean":
			_, okType = v.(bool)
		case "number":
			_, okType = v.(float64)
		case "integer":
			f, isNum := v.(float64)
			okType = isNum && f == math.Trunc(f)
		}
		if !okType {
			fail("want %s, got %T", typ, v)
			return errs
		}
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := v.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			fail("%q does not match %s", str, p)
		}
	}
	if f, isNum := v.(float64); isNum {
		if m, ok := s["minimum"].(float64); ok && f < m {
			fail("%v below minimum %v", f, m)
		}
		if m, ok := s["maximum"].(float64); ok && f > m {
			fail("%v above maximum %v", f, m)
		}
	}
	if obj, isObj := v.(map[string]any); isObj {
		props, _ := s["properties"].(map[string]any)
		for _, r := range asStrings(s["required"]) {
			if _, ok := obj[r]; !ok {
				fail("missing required %q", r)
			}
		}
		for k, val := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, validate(root, ps, val, path+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("unknown field %q", k)
				}
			case map[string]any:
				errs = append(errs, validate(root, ap, val, path+"."+k)...)
			}
		}
	}
	if arr, isArr := v.([]any); isArr {
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range arr {
				errs = append(errs, validate(root, items, x, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			sub := sub.(map[string]any)
			if cond, ok := sub["if"].(map[string]any); ok {
				if len(validate(root, cond, v, path)) == 0 {
					errs = append(errs, validate(root, sub["then"].(map[string]any), v, path)...)
				}
				continue
			}
			errs = append(errs, validate(root, sub, v, path)...)
		}
	}
	return errs
}

func asStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, x.(string))
		}
	}
	return out
}

// yamlDocs returns the documents of a YAML file as JSON values.
func yamlDocs(t *testing.T, src []byte) []any {
	t.Helper()
	var out []any
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			break
		}
		if v == nil {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var j any
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("schema/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSchemaAcceptsExamples validates every example and every accepted golden
// input against the published schema, and checks that the schema rejects
// inputs with unknown fields and wrong types, as the loader does.
func TestSchemaAcceptsExamples(t *testing.T) {
	root := loadSchema(t)
	files, _ := filepath.Glob("examples/*.yaml")
	extra, _ := filepath.Glob("examples/extra/*.yaml")
	oks, _ := filepath.Glob("testdata/in/*-ok.yaml")
	files = append(append(files, extra...), oks...)
	if len(files) < 8 {
		t.Fatalf("found only %d example files", len(files))
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs := yamlDocs(t, src)
			if len(docs) == 0 {
				t.Fatal("no documents")
			}
			for _, d := range docs {
				if errs := validate(root, root, d, ""); len(errs) > 0 {
					t.Errorf("schema rejects a valid policy:\n%s", strings.Join(errs, "\n"))
				}
			}
		})
	}
	for _, tc := range []struct{ file, want string }{
		{"testdata/in/unknown-fields.yaml", `unknown field "owner"`},
		{"testdata/in/dye-unknown-field.yaml", `unknown field "header"`},
		{"testdata/in/wrong-types.yaml", "want string"},
		{"testdata/in/bad-durations.yaml", "does not match"},
		{"testdata/in/missing-required.yaml", `missing required "name"`},
		{"testdata/in/release-errors.yaml", "not in"},
		{"testdata/in/envelope-errors.yaml", "want meshwarden.io/v1alpha1"},
	} {
		t.Run("rejects "+tc.file, func(t *testing.T) {
			src, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for _, d := range yamlDocs(t, src) {
				all = append(all, validate(root, root, d, "")...)
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Errorf("schema errors %q do not contain %q", all, tc.want)
			}
		})
	}
}
