package dye

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
)

// TestREADMEExamples checks that README.md shows each testdata example
// verbatim (after its <!-- example: FILE --> marker) and that each parses.
func TestREADMEExamples(t *testing.T) { kittest.READMEExamples(t, 2, dyeconfig.ParseConfig) }
