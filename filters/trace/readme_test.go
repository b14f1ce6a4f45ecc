package trace

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
)

// TestREADMEExamples checks that README.md shows each testdata example
// verbatim (after its <!-- example: FILE --> marker) and that each parses.
func TestREADMEExamples(t *testing.T) { kittest.READMEExamples(t, 1, traceconfig.ParseConfig) }
