// Package metricdoc reads the Prometheus series a README documents, so a
// test can check that a freshly started component exports every one of
// them before its first event (counters at zero), not only after it.
package metricdoc

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// name matches a series name, with an optional brace group of parts as
// the READMEs write them: meshwarden_controlplane_{nacks_total,nodes},
// meshwarden_audit_wal_{fsyncs,commits}_total.
var name = regexp.MustCompile(`\b(meshwarden_[a-z0-9_]*)(\{[a-z0-9_,]+\})?([a-z0-9_]*)`)

// Names returns the meshwarden_* series the given Markdown files name,
// brace groups expanded, sorted and unique. A name ending in '_' (a family
// prefix such as meshwarden_audit_wal_) is left out.
func Names(paths ...string) ([]string, error) {
	set := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("metricdoc: %w", err)
		}
		for _, m := range name.FindAllStringSubmatch(string(b), -1) {
			if m[2] == "" || !strings.HasSuffix(m[1], "_") { // no group, or a label list
				set[m[1]] = true
				continue
			}
			for _, part := range strings.Split(strings.Trim(m[2], "{}"), ",") {
				set[m[1]+part+m[3]] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		if !strings.HasSuffix(n, "_") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Missing returns the names g does not export (a family with no series
// counts as missing), skipping those in exempt.
func Missing(g prometheus.Gatherer, names []string, exempt map[string]string) ([]string, error) {
	fams, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("metricdoc: gather: %w", err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		if len(f.GetMetric()) > 0 {
			have[f.GetName()] = true
		}
	}
	var out []string
	for _, n := range names {
		if _, ok := exempt[n]; !ok && !have[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// Check fails tb unless g exports every series readme documents, except
// those in exempt (name → why it cannot exist before its first event).
// atLeast guards the parser: a README naming fewer series fails. what
// names the component in the failure ("plane", "gateway", ...).
func Check(tb testing.TB, what string, g prometheus.Gatherer, readme string, atLeast int, exempt map[string]string) {
	tb.Helper()
	names, err := Names(readme)
	if err != nil {
		tb.Fatal(err)
	}
	if len(names) < atLeast {
		tb.Fatalf("%s documents %d series: the parser is broken: %v", readme, len(names), names)
	}
	miss, err := Missing(g, names, exempt)
	if err != nil {
		tb.Fatal(err)
	}
	if len(miss) > 0 {
		tb.Fatalf("documented but not exported by a fresh %s: %v (of %v)", what, miss, names)
	}
}
