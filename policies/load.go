// Package policies is Meshwarden's policy file format and its loader: YAML
// documents written by security teams (dyeing, audit, tracing, canary
// routes, filter releases, certificates, access) are decoded strictly,
// validated with every error located at file:line:column and field path,
// checked against the Consul catalog, and turned into an [ir.PolicySet] for
// the control plane's translator. See README.md for the format.
package policies

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/meshwarden/meshwarden/ir"
)

// MaxFileBytes bounds one policy file; larger files are rejected unread.
const MaxFileBytes = 4 << 20

// LoadDir loads every *.yaml and *.yml file directly in dir (hidden files
// and subdirectories are ignored) with [LoadFiles]. Diagnostics name files
// as dir/name; the revision depends only on the names inside dir and their
// contents, not on where dir is.
func LoadDir(dir string, cat *ir.Catalog) (*ir.PolicySet, *Diagnostics, error) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	return load(files, cat, dir)
}

// ReadDir reads the policy files of dir (the files [LoadDir] loads) into a
// map from base name to content, the form [LoadFiles] and the control
// plane's HTTP API take.
func ReadDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read policy directory: %w", err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") || e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("read policy file: %w", err)
		}
		if info.Size() > MaxFileBytes {
			return nil, fmt.Errorf("policy file %s is %d bytes: split it, files are limited to %d bytes", filepath.Join(dir, name), info.Size(), MaxFileBytes)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read policy file: %w", err)
		}
		files[name] = b
	}
	return files, nil
}

// LoadFiles decodes, validates and cross-checks a policy set given as file
// name → content, and returns it as IR.
//
// The set is all or nothing: when any document has an error the returned
// set is nil, every error found is in the Diagnostics, and the returned
// error is the *Diagnostics itself. Warnings (for example a service that is
// not in the catalog) do not reject the set. cat may be nil, in which case
// cross-references to Consul are not checked.
//
// The set's Revision is the sha256 (hex) over the sorted file names and
// contents, so the same files always give the same revision.
func LoadFiles(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, *Diagnostics, error) {
	return load(files, cat, "")
}

// Revision returns the content hash of a set of files: sha256 over each
// name and content in name order, each length-prefixed.
func Revision(files map[string][]byte) string {
	names := sortedNames(files)
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(files[name])))
		h.Write(n[:])
		h.Write(files[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedNames(files map[string][]byte) []string {
	return slices.Sorted(maps.Keys(files))
}

// doc is one decoded document with what is needed to report on it.
type doc struct {
	dec  *decoder
	file string
	line int
	kind string
	name string
	ns   string
	spec reflect.Value // pointer to the kind's spec type
}

func (x *doc) source() string { return fmt.Sprintf("%s:%d", x.file, x.line) }

func load(files map[string][]byte, cat *ir.Catalog, dir string) (*ir.PolicySet, *Diagnostics, error) {
	diags := &Diagnostics{}
	display := func(name string) string {
		if dir == "" {
			return name
		}
		return filepath.Join(dir, name)
	}
	var docs []*doc
	names := sortedNames(files)
	for _, name := range names {
		docs = append(docs, parseFile(display(name), files[name], diags)...)
	}
	ps := &ir.PolicySet{Revision: Revision(files)}
	for _, name := range names {
		ps.Sources = append(ps.Sources, display(name))
	}
	if len(files) == 0 {
		diags.add(Diagnostic{Severity: SeverityWarning, File: display("."), Message: "no policy files (*.yaml) directly in this directory (subdirectories are not read; point at the one holding the files, e.g. policies/examples): the set is empty, so no filters, routes or access rules apply"})
	}
	b := &builder{diags: diags, cat: cat, ps: ps}
	b.build(docs)
	if !diags.HasErrors() {
		if err := ps.Validate(); err != nil {
			for _, e := range strings.Split(err.Error(), "\n") {
				diags.add(Diagnostic{File: "(policy set)", Message: e})
			}
		}
	}
	diags.sort()
	if diags.HasErrors() {
		return nil, diags, diags
	}
	return ps, diags, nil
}

// yamlError is what goccy/go-yaml's parser errors provide.
type yamlError interface {
	GetToken() *token.Token
	GetMessage() string
}

// parseFile parses one file into its documents, reporting syntax and
// envelope errors.
func parseFile(file string, src []byte, diags *Diagnostics) []*doc {
	if len(src) > MaxFileBytes {
		diags.add(Diagnostic{File: file, Message: fmt.Sprintf("file is %d bytes: split it, files are limited to %d bytes", len(src), MaxFileBytes)})
		return nil
	}
	var out []*doc
	for _, c := range splitDocuments(src) {
		out = append(out, parseChunk(file, c.src, c.line, diags)...)
	}
	return out
}

// chunk is a part of a file starting at a document marker.
type chunk struct {
	src  []byte
	line int // lines before the chunk
}

// splitDocuments cuts src before every "---" document marker at the start of
// a line, so each chunk holds at most one document. goccy/go-yaml drops every
// document after an empty one ("---" followed by "---"), silently; parsing
// documents one by one means no policy can vanish that way. A marker at
// column 0 always starts a document in YAML, even inside block scalars.
func splitDocuments(src []byte) []chunk {
	var out []chunk
	start, startLine, line := 0, 0, 0
	for i := 0; i < len(src); {
		end := bytes.IndexByte(src[i:], '\n')
		next := len(src)
		if end >= 0 {
			next = i + end + 1
		}
		l := src[i:next]
		if i > start && bytes.HasPrefix(l, []byte("---")) && (len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\n' || l[3] == '\r') && !onlyPreamble(src[start:i]) {
			out = append(out, chunk{src: src[start:i], line: startLine})
			start, startLine = i, line
		}
		i = next
		line++
	}
	return append(out, chunk{src: src[start:], line: startLine})
}

// onlyPreamble reports whether b holds only directives (%YAML), comments
// and blank lines, which belong to the document that follows.
func onlyPreamble(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '%' && l[0] != '#' {
			return false
		}
	}
	return true
}

// parseChunk parses one chunk of a file (lineOffset lines into it).
func parseChunk(file string, src []byte, lineOffset int, diags *Diagnostics) []*doc {
	f, err := parser.ParseBytes(src, 0)
	if err != nil {
		d := Diagnostic{File: file, Message: "YAML syntax: " + err.Error()}
		var ye yamlError
		if errors.As(err, &ye) {
			d.Message = "YAML syntax: " + ye.GetMessage() + ": fix the indentation or quoting here"
			if strings.Contains(ye.GetMessage(), "already defined") {
				d.Message = "duplicate key: " + ye.GetMessage() + ": keep only one"
			}
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				d.Line, d.Column = tk.Position.Line+lineOffset, tk.Position.Column
			}
		}
		diags.add(d)
		return nil
	}
	var out []*doc
	for _, dn := range f.Docs {
		body := dn.Body
		if body == nil {
			continue
		}
		switch body.(type) {
		case *ast.CommentGroupNode, *ast.DirectiveNode:
			continue
		}
		if x := decodeDocument(file, body, lineOffset, diags); x != nil {
			out = append(out, x)
		}
	}
	return out
}

func decodeDocument(file string, body ast.Node, lineOffset int, diags *Diagnostics) *doc {
	dec := newDecoder(file, diags)
	dec.lineOffset = lineOffset
	p := nodePos(body)
	dec.positions[""] = p
	var env Document
	switch body.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
	default:
		dec.errAt(body, "", "a policy document must be a mapping with apiVersion, kind, metadata and spec, got %s", describeNode(body))
		return nil
	}
	dec.decode(body, reflect.ValueOf(&env).Elem(), "")
	checkRequired(dec, reflect.ValueOf(env), "")
	x := &doc{dec: dec, file: file, line: p.line + lineOffset, kind: env.Kind, name: env.Metadata.Name, ns: env.Metadata.Namespace}
	if _, ok := dec.positions["apiVersion"]; ok && env.APIVersion != APIVersion {
		dec.errPath("apiVersion", "%q is not supported: use %s", env.APIVersion, APIVersion)
	}
	if _, ok := dec.positions["metadata.name"]; ok {
		if err := checkName(env.Metadata.Name); err != nil {
			dec.errPath("metadata.name", "%v", err)
		}
	}
	if env.Metadata.Namespace != "" {
		if err := checkName(env.Metadata.Namespace); err != nil {
			dec.errPath("metadata.namespace", "%v", err)
		}
	}
	if _, ok := dec.positions["kind"]; !ok || dec.failed["kind"] {
		return nil
	}
	t := SpecType(env.Kind)
	if t == nil {
		msg := fmt.Sprintf("unknown kind %q", env.Kind)
		if s := suggest(env.Kind, Kinds()); s != "" {
			msg += fmt.Sprintf(": did you mean %q?", s)
		}
		dec.errPath("kind", "%s (kinds: %s)", msg, strings.Join(Kinds(), ", "))
		return nil
	}
	x.spec = reflect.New(t)
	if env.Spec.Node != nil {
		dec.decode(env.Spec.Node, x.spec.Elem(), "spec")
		checkRequired(dec, x.spec.Elem(), "spec")
	}
	return x
}

// checkRequired reports every field tagged mw:"required" that the document
// does not set, walking nested structs and lists.
func checkRequired(dec *decoder, v reflect.Value, path string) {
	if path != "" {
		if _, present := dec.positions[path]; !present {
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			checkRequired(dec, v.Elem(), path)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			checkRequired(dec, v.Index(i), indexPath(path, i))
		}
	case reflect.Struct:
		t := v.Type()
		for _, f := range structFields(t) {
			sf := t.FieldByIndex(f.index)
			p := childPath(path, f.name)
			if parseMWTag(sf.Tag.Get("mw")).required {
				if _, present := dec.positions[p]; !present {
					where := "the document"
					if path != "" {
						where = path
					}
					dec.errPath(path, "missing required field %q: add it to %s", f.name, where)
					continue
				}
			}
			checkRequired(dec, v.FieldByIndex(f.index), p)
		}
	}
}

// checkName checks a metadata name: a DNS label, as in Kubernetes.
func checkName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q is not a valid name: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (c == '-' && i > 0 && i < len(s)-1)
		if !ok {
			return fmt.Errorf("%q is not a valid name: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", s)
		}
	}
	return nil
}
