// Package deploy holds what a platform team deploys Meshwarden with:
// systemd units, the Prometheus scrape configuration and alert rules (with
// promtool unit tests), and a Grafana dashboard. The tests here keep them
// true to the code: the rules pass promtool, every metric they or the
// dashboard name is one the code exports, every dashboard query parses, and
// every flag a unit passes is one the command accepts.
package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// promtool returns the promtool binary, or skips (fails under CI, which
// installs Debian's prometheus package) when it is not installed.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found: .ci/run installs Debian's prometheus package")
		}
		t.Skip("promtool not found: apt-get install prometheus to run the alert rule tests")
	}
	return p
}

func run(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	run(t, "prometheus", pt, "check", "rules", "meshwarden.rules.yml")
	run(t, "prometheus", pt, "test", "rules", "meshwarden.rules.test.yml")
	run(t, "prometheus", pt, "check", "config", "prometheus.yml")
}

// TestEveryAlertTested: each alert has a firing case in the unit tests.
func TestEveryAlertTested(t *testing.T) {
	rules := read(t, "prometheus/meshwarden.rules.yml")
	tests := read(t, "prometheus/meshwarden.rules.test.yml")
	alerts := regexp.MustCompile(`(?m)^\s+- alert: (\w+)$`).FindAllStringSubmatch(rules, -1)
	if len(alerts) < 20 {
		t.Fatalf("found %d alerts, the rules file has more: the pattern is stale", len(alerts))
	}
	for _, a := range alerts {
		if !strings.Contains(tests, "alertname: "+a[1]+"\n    exp_alerts:\n    - exp_labels:") {
			t.Errorf("alert %s has no firing case in meshwarden.rules.test.yml", a[1])
		}
	}
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal([]byte(read(t, "grafana/meshwarden.json")), &d); err != nil {
		t.Fatalf("grafana/meshwarden.json: %v", err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("%s #%d", p.Title, i+1)] = tg.Expr
		}
	}
	if len(out) < 20 {
		t.Fatalf("the dashboard has %d queries: it was not read right", len(out))
	}
	return out
}

// TestDashboardQueriesParse hands every dashboard query to promtool as a
// recording rule, so a query Prometheus cannot parse fails here.
func TestDashboardQueriesParse(t *testing.T) {
	pt := promtool(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	titles := slices.Sorted(maps.Keys(dashboardExprs(t)))
	exprs := dashboardExprs(t)
	for i, title := range titles {
		q, _ := json.Marshal(exprs[title])
		fmt.Fprintf(&b, "      - record: dashboard:query%d\n        expr: %s\n", i, q)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.rules.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, pt, "check", "rules", "dashboard.rules.yml")
}

// TestMetricsExist: every meshwarden_* series (and mw_* series the wasm
// filters define) the rules and the dashboard query is defined in the
// product's Go source (histogram suffixes aside).
func TestMetricsExist(t *testing.T) {
	defined := definedMetrics(t)
	used := map[string][]string{}
	name := regexp.MustCompile(`\b(?:meshwarden|mw)_[a-z0-9_]+`)
	for _, f := range []string{"prometheus/meshwarden.rules.yml", "grafana/meshwarden.json"} {
		for _, m := range name.FindAllString(read(t, f), -1) {
			used[m] = append(used[m], f)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(used)) {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && defined[b] {
				base = b
			}
		}
		if !defined[base] {
			t.Errorf("%s (in %s) is not a metric the code defines", m, used[m][0])
		}
	}
}

// definedMetrics collects the "meshwarden_..." string literals of the
// repository's non-test Go files.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"((?:meshwarden|mw)_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 30 {
		t.Fatalf("found %d metric names in the source: the walk is broken", len(out))
	}
	return out
}

// TestUnitFlags: every flag a systemd unit passes is accepted by the
// command it runs (per its --help), so a renamed flag cannot silently
// break a deployment.
func TestUnitFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the meshwarden binary")
	}
	bin := filepath.Join(t.TempDir(), "meshwarden")
	run(t, "..", "go", "build", "-o", bin, "./cmd/meshwarden")
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) != 3 {
		t.Fatalf("units: %v %v", units, err)
	}
	flag := regexp.MustCompile(`--[a-z0-9-]+`)
	for _, u := range units {
		args := execStart(t, u)
		if len(args) < 2 || args[0] != "/usr/local/bin/meshwarden" {
			t.Fatalf("%s: ExecStart %q does not run /usr/local/bin/meshwarden", u, args)
		}
		sub := []string{}
		for _, a := range args[1:] {
			if strings.HasPrefix(a, "-") {
				break
			}
			sub = append(sub, a)
		}
		help := run(t, ".", bin, append(sub, "--help")...)
		for _, a := range args[1+len(sub):] {
			if f := flag.FindString(a); f != "" && strings.HasPrefix(a, "--") && !strings.Contains(help, "      "+f+" ") {
				t.Errorf("%s: %s %s has no flag %s", u, "meshwarden", strings.Join(sub, " "), f)
			}
		}
	}
}

// execStart returns the words of a unit's first ExecStart (continuation
// lines joined).
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	if lines := execLines(t, unit, "ExecStart="); len(lines) > 0 {
		return lines[0]
	}
	return nil
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
