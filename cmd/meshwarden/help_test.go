package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestFlagValueNames: pflag takes the first `back-quoted` word of a usage
// string as the flag's value name in --help; a back-quoted example there
// garbles the help line (as --changelog's did). Every value name is one word.
func TestFlagValueNames(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			n++
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " \t") {
				t.Errorf("%s --%s: value name %q in --help: use quotes other than back quotes in its usage", c.CommandPath(), f.Name, name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	if n < 100 {
		t.Fatalf("walked %d flags: the walk is broken", n)
	}
}
