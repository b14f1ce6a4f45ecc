package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestREADMECommands: every `meshwarden …` line in the sh blocks of the
// top-level README and the deployment guide names a real command, and every
// flag on it is one that command accepts, so their examples run as written
// (those that need a running mesh are run by the e2e and demo tests).
func TestREADMECommands(t *testing.T) {
	var b []byte
	for _, f := range []string{"../../README.md", "../../docs/DEPLOYMENT.md"} {
		x, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, x...)
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```")
	flagRe := regexp.MustCompile(`^--?[a-zA-Z][a-zA-Z0-9-]*`)
	checked := 0
	for _, m := range block.FindAllStringSubmatch(string(b), -1) {
		for _, line := range strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n") {
			line = strings.TrimSpace(strings.SplitN(line, " #", 2)[0])
			for _, part := range strings.Split(line, "&&") {
				fields := strings.Fields(part)
				for len(fields) > 0 && strings.Contains(fields[0], "=") { // VAR=value prefixes
					fields = fields[1:]
				}
				if len(fields) == 0 || fields[0] != "meshwarden" {
					continue
				}
				cmd, rest, err := newRootCmd().Find(fields[1:])
				if err != nil || cmd.Parent() == nil {
					t.Errorf("README: %q: no such command (%v)", part, err)
					continue
				}
				for _, a := range rest {
					f := flagRe.FindString(a)
					if f == "" {
						continue
					}
					var fl *pflag.Flag
					if strings.HasPrefix(f, "--") {
						fl = cmd.Flags().Lookup(f[2:])
						if fl == nil {
							fl = cmd.InheritedFlags().Lookup(f[2:])
						}
					} else {
						fl = cmd.Flags().ShorthandLookup(f[1:2])
					}
					if fl == nil && f != "--help" {
						t.Errorf("README: %q: %s has no flag %s", strings.TrimSpace(part), cmd.CommandPath(), f)
					}
				}
				checked++
			}
		}
	}
	if checked < 18 {
		t.Fatalf("checked %d README commands: the parser is broken", checked)
	}
}
