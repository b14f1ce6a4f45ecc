package ckptlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadsOnlyWhatWasAppended: the exporters follow the
// checkpoint log incrementally: each call returns only new complete lines
// with their index among the non-blank lines, waits for a line still being
// written, and starts over if the log shrank.
func TestReadsOnlyWhatWasAppended(t *testing.T) {
	p := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	l := New(p)
	app := func(s string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	step := func(want string, wantFirst int) {
		t.Helper()
		lines, first, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range lines {
			got = append(got, string(b))
		}
		if strings.Join(got, "|") != want || first != wantFirst {
			t.Fatalf("next: %q from %d, want %q from %d", strings.Join(got, "|"), first, want, wantFirst)
		}
	}
	step("", 0) // no log yet
	app("a\nb\n")
	step("a|b", 0)
	step("", 2)
	app("\nc\nd") // a blank line does not count; d is still being written
	step("c", 2)
	app("d\n")
	step("dd", 3)
	if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil { // replaced by something shorter
		t.Fatal(err)
	}
	step("x", 0)
}
