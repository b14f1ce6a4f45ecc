package auditconfig

import (
	"strconv"
	"strings"

	"github.com/meshwarden/meshwarden/filters/kit/kitconfig"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// tmplPart is one piece of a resource template: literal text or a variable.
type tmplPart struct {
	lit  string
	kind byte // 0 literal, 'p' path segment, 'h' header, 'q' query, 'm' method
	idx  int
	name string
}

// Template is a parsed resource template (Rule.Resource).
type Template []tmplPart

// ParseTemplate parses "account/{path.2}"-style templates.
func ParseTemplate(s string) (Template, error) {
	var t Template
	for len(s) > 0 {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			if strings.IndexByte(s, '}') >= 0 {
				return nil, guestfmt.Errorf("unmatched '}' in template: write variables as {path.N}, {header.NAME}, {query.NAME} or {method}")
			}
			t = append(t, tmplPart{lit: s})
			break
		}
		if i > 0 {
			t = append(t, tmplPart{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, guestfmt.Errorf("unclosed '{' in template: write variables as {path.N}, {header.NAME}, {query.NAME} or {method}")
		}
		v := s[i+1 : i+j]
		s = s[i+j+1:]
		switch {
		case v == "method":
			t = append(t, tmplPart{kind: 'm'})
		case strings.HasPrefix(v, "path."):
			n, err := strconv.Atoi(v[5:])
			if err != nil || n < 1 || n > 64 {
				return nil, guestfmt.Errorf("{%s}: the path segment number must be 1 to 64", v)
			}
			t = append(t, tmplPart{kind: 'p', idx: n})
		case strings.HasPrefix(v, "header.") && len(v) > 7:
			name := v[7:]
			if !kitconfig.ValidHeaderName(name) {
				return nil, guestfmt.Errorf("{%s}: %q is not a lowercase header name", v, name)
			}
			t = append(t, tmplPart{kind: 'h', name: name})
		case strings.HasPrefix(v, "query.") && len(v) > 6:
			t = append(t, tmplPart{kind: 'q', name: v[6:]})
		default:
			return nil, guestfmt.Errorf("{%s} is not a template variable: use {path.N}, {header.NAME}, {query.NAME} or {method}", v)
		}
	}
	return t, nil
}

// Expand renders the template for a request.
func (t Template) Expand(method, path, query string, hdr func(string) string) string {
	if len(t) == 0 {
		return ""
	}
	return string(t.AppendExpand(make([]byte, 0, 64), method, path, query, hdr))
}

// AppendExpand appends the rendering of the template (Expand) to b.
func (t Template) AppendExpand(b []byte, method, path, query string, hdr func(string) string) []byte {
	for _, p := range t {
		switch p.kind {
		case 0:
			b = append(b, p.lit...)
		case 'm':
			b = append(b, method...)
		case 'p':
			b = append(b, pathSegment(path, p.idx)...)
		case 'h':
			if hdr != nil {
				b = append(b, hdr(p.name)...)
			}
		case 'q':
			b = append(b, queryParam(query, p.name)...)
		}
	}
	return b
}

// pathSegment returns the n-th (from 1) segment of path, or "".
func pathSegment(path string, n int) string {
	path = strings.TrimPrefix(path, "/")
	for i := 1; ; i++ {
		j := strings.IndexByte(path, '/')
		if i == n {
			if j < 0 {
				return path
			}
			return path[:j]
		}
		if j < 0 {
			return ""
		}
		path = path[j+1:]
	}
}

// queryParam returns the raw value of the first query parameter name.
func queryParam(query, name string) string {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v
		}
	}
	return ""
}
