package main

import (
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshwarden/meshwarden/internal/didyoumean"
)

// suggestFlag returns " (did you mean --x?)" for an "unknown flag: --y"
// error of c when one of c's flags (its own or inherited) is within an
// edit distance of 2 of --y, or starts with it; "" otherwise.
func suggestFlag(c *cobra.Command, err error) string {
	typed, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok || typed == "" {
		return ""
	}
	var names []string
	add := func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	}
	c.Flags().VisitAll(add)
	c.InheritedFlags().VisitAll(add)
	sort.Strings(names) // ties go to the first name in order
	best, bestD := "", 3
	for _, n := range names {
		d := didyoumean.Distance(typed, n)
		if strings.HasPrefix(n, typed) && len(typed) >= 3 {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean --" + best + "?)"
}
