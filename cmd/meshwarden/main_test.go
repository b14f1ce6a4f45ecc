package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelpListsSubcommands(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"controlplane", "gateway", "policy", "audit", "demo", "version"} {
		if !strings.Contains(out.String(), sub) {
			t.Errorf("--help does not mention %q:\n%s", sub, out.String())
		}
	}
}
