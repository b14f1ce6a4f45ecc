package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestUnknownFlagGolden: a mistyped flag is a usage error (exit 2) naming
// the closest flag of that command, inherited flags included.
func TestUnknownFlagGolden(t *testing.T) {
	var b strings.Builder
	for _, args := range [][]string{
		{"gateway", "--lisen", "127.0.0.1:0"},
		{"audit", "verify", "--dirr", "x"},
		{"policy", "diff", "--exit-cod"},
		{"controlplane", "--consull", "127.0.0.1:8500"},
		{"proxy-status", "--plan", "127.0.0.1:1"},
		{"gateway", "--log-formt", "json"},
		{"gateway", "--zzzzzz"},
		{"gateway", "-Q"},
	} {
		_, _, err := runCLI(t, args...)
		if err == nil {
			t.Fatalf("meshwarden %v: accepted", args)
		}
		b.WriteString("$ meshwarden " + strings.Join(args, " ") + "\n")
		b.WriteString("meshwarden: " + err.Error() + "\n")
		b.WriteString("exit " + itoa(exitStatus(err)) + "\n\n")
	}
	golden(t, "unknown-flags.golden", b.String())
}

// TestEveryCommandSuggestsFlags: on every command, each flag (of 4 or more
// letters) typed without its last letter gets a suggestion.
func TestEveryCommandSuggestsFlags(t *testing.T) {
	root := newRootCmd()
	var walk func(c *cobra.Command)
	checked := 0
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if len(f.Name) < 4 || f.Hidden {
				return
			}
			typo := f.Name[:len(f.Name)-1]
			if c.Flags().Lookup(typo) != nil {
				return
			}
			_, _, err := runCLI(t, append(strings.Fields(strings.TrimPrefix(c.CommandPath(), "meshwarden")), "--"+typo)...)
			if err == nil || !strings.Contains(err.Error(), "(did you mean --") {
				t.Errorf("%s --%s: %v, want a suggestion", c.CommandPath(), typo, err)
			}
			checked++
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if checked < 50 {
		t.Fatalf("checked %d flags: the walk is broken", checked)
	}
}
