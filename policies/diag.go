package policies

import (
	"fmt"
	"sort"
	"strings"
)

// Severity says whether a [Diagnostic] rejects the policy set.
type Severity string

const (
	// SeverityError rejects the whole set.
	SeverityError Severity = "error"
	// SeverityWarning is reported but does not reject the set.
	SeverityWarning Severity = "warning"
)

// Diagnostic is one problem found in a policy file. Line and Column are
// 1-based; zero means the position is unknown (for example a problem with
// the set as a whole).
type Diagnostic struct {
	Severity Severity `json:"severity"`
	File     string   `json:"file"`
	Line     int      `json:"line,omitempty"`
	Column   int      `json:"column,omitempty"`
	// Path is the field path inside the document, e.g. spec.lanes[1].subset.
	Path string `json:"path,omitempty"`
	// Message says what is wrong and what to change.
	Message string `json:"message"`
}

// String formats d as "file:line:col: path: message", leaving out the parts
// that are unknown. Warnings are prefixed with "warning: ".
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Column)
	}
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics collects every error and warning of one load. It implements
// error; a load whose Diagnostics has errors is rejected whole.
type Diagnostics struct {
	Errors   []Diagnostic `json:"errors,omitempty"`
	Warnings []Diagnostic `json:"warnings,omitempty"`
}

var _ error = (*Diagnostics)(nil)

// HasErrors reports whether the set must be rejected.
func (d *Diagnostics) HasErrors() bool { return d != nil && len(d.Errors) > 0 }

// Error formats every error, one per line, as "file:line:col: path: message".
func (d *Diagnostics) Error() string {
	if d == nil || len(d.Errors) == 0 {
		return "no policy errors"
	}
	lines := make([]string, 0, len(d.Errors)+1)
	if len(d.Errors) > 1 {
		lines = append(lines, fmt.Sprintf("%d policy errors:", len(d.Errors)))
	}
	for _, e := range d.Errors {
		lines = append(lines, e.String())
	}
	return strings.Join(lines, "\n")
}

// All returns errors then warnings, each formatted on its own line.
func (d *Diagnostics) All() []string {
	if d == nil {
		return nil
	}
	out := make([]string, 0, len(d.Errors)+len(d.Warnings))
	for _, e := range d.Errors {
		out = append(out, e.String())
	}
	for _, w := range d.Warnings {
		out = append(out, w.String())
	}
	return out
}

func (d *Diagnostics) add(x Diagnostic) {
	if x.Severity == SeverityWarning {
		d.Warnings = append(d.Warnings, x)
		return
	}
	x.Severity = SeverityError
	d.Errors = append(d.Errors, x)
}

// sort orders diagnostics by file, line, column, then message, so output is
// stable whatever order the checks ran in.
func (d *Diagnostics) sort() {
	less := func(s []Diagnostic) func(i, j int) bool {
		return func(i, j int) bool {
			a, b := s[i], s[j]
			if a.File != b.File {
				return a.File < b.File
			}
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			if a.Column != b.Column {
				return a.Column < b.Column
			}
			if a.Path != b.Path {
				return a.Path < b.Path
			}
			return a.Message < b.Message
		}
	}
	sort.SliceStable(d.Errors, less(d.Errors))
	sort.SliceStable(d.Warnings, less(d.Warnings))
}
