package policies

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// SchemaBaseURL is the $id prefix of the published JSON Schemas.
const SchemaBaseURL = "https://meshwarden.io/schemas/v1alpha1/"

// DurationPattern is the JSON Schema pattern of a Go duration ("15s",
// "2m30s", "1.5h", "0").
const DurationPattern = `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`

// mwTag is the parsed `mw:"..."` struct tag: "required", "enum=a|b",
// "max=N", comma-separated.
type mwTag struct {
	required bool
	enum     []string
	max      *float64
}

func parseMWTag(s string) mwTag {
	var t mwTag
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "required":
			t.required = true
		case "enum":
			t.enum = strings.Split(v, "|")
		case "max":
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				t.max = &f
			}
		}
	}
	return t
}

// FieldDocs maps "pkgpath.Type.Field" to a field's documentation, used as
// descriptions in generated schemas. It may be nil.
type FieldDocs map[string]string

// JSONSchema returns the JSON Schema (draft 2020-12) of one kind's documents,
// generated from the Go types the loader decodes into, so the schema and the
// loader cannot disagree on field names and types. docs adds descriptions.
func JSONSchema(kind string, docs FieldDocs) ([]byte, error) {
	s, err := kindSchema(kind, docs)
	if err != nil {
		return nil, err
	}
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = SchemaBaseURL + strings.ToLower(kind) + ".json"
	return marshalSchema(s)
}

// PolicyJSONSchema returns one schema for any policy document: it selects
// the kind's schema by the kind field. Point an editor at it for every file
// of a policy directory.
func PolicyJSONSchema(docs FieldDocs) ([]byte, error) {
	defs := map[string]any{}
	var branches []any
	for _, k := range Kinds() {
		s, err := kindSchema(k, docs)
		if err != nil {
			return nil, err
		}
		defs[k] = s
		branches = append(branches, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"kind": map[string]any{"const": k}}, "required": []string{"kind"}},
			"then": map[string]any{"$ref": "#/$defs/" + k},
		})
	}
	s := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         SchemaBaseURL + "policy.json",
		"title":       "Meshwarden policy document",
		"description": "One YAML document of a Meshwarden policy file; kind selects the schema of spec.",
		"type":        "object",
		"required":    []string{"apiVersion", "kind", "metadata", "spec"},
		"properties": map[string]any{
			"kind": map[string]any{"enum": Kinds()},
		},
		"allOf": branches,
		"$defs": defs,
	}
	return marshalSchema(s)
}

func marshalSchema(s map[string]any) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode schema: %w", err)
	}
	return append(b, '\n'), nil
}

func kindSchema(kind string, docs FieldDocs) (map[string]any, error) {
	t := SpecType(kind)
	if t == nil {
		return nil, fmt.Errorf("unknown kind %q: use one of %s", kind, strings.Join(Kinds(), ", "))
	}
	env := typeSchema(reflect.TypeOf(Document{}), docs)
	props := env["properties"].(map[string]any)
	props["apiVersion"] = map[string]any{"const": APIVersion}
	props["kind"] = map[string]any{"const": kind}
	spec := typeSchema(t, docs)
	spec["description"] = fmt.Sprintf("The %s specification.", kind)
	props["spec"] = spec
	env["title"] = kind
	return env, nil
}

// typeSchema describes t as the decoder accepts it.
func typeSchema(t reflect.Type, docs FieldDocs) map[string]any {
	switch {
	case t == durationType:
		return map[string]any{"type": "string", "pattern": DurationPattern}
	case t == rawNodeType, t == rawMessageType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeSchema(t.Elem(), docs)
	case reflect.Interface:
		return map[string]any{}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		return map[string]any{"type": "integer", "minimum": -math.Pow(2, float64(bits-1)), "maximum": math.Pow(2, float64(bits-1)) - 1}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0, "maximum": math.Pow(2, float64(t.Bits())) - 1}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem(), docs)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem(), docs)}
	case reflect.Struct:
		props := map[string]any{}
		required := []string{}
		for _, f := range structFields(t) {
			sf := t.FieldByIndex(f.index)
			fs := typeSchema(sf.Type, docs)
			owner := ownerOf(t, f.index)
			if d := docs[owner.PkgPath()+"."+owner.Name()+"."+sf.Name]; d != "" {
				fs["description"] = d
			}
			tag := parseMWTag(sf.Tag.Get("mw"))
			if tag.enum != nil {
				fs["enum"] = tag.enum
			}
			if tag.max != nil {
				fs["maximum"] = *tag.max
			}
			if tag.required {
				required = append(required, f.name)
			}
			props[f.name] = fs
		}
		s := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return map[string]any{}
}

// ownerOf returns the struct type that declares the field at index.
func ownerOf(t reflect.Type, index []int) reflect.Type {
	for _, i := range index[:len(index)-1] {
		t = t.Field(i).Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	return t
}
