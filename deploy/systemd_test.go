package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
	cliOut  []byte
)

// cli builds the meshwarden binary once per test binary.
func cli(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the meshwarden binary")
	}
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deploy-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin = filepath.Join(dir, "meshwarden")
		cmd := exec.Command("go", "build", "-o", cliBin, "./cmd/meshwarden")
		cmd.Dir = ".."
		cliOut, cliErr = cmd.CombinedOutput()
	})
	if cliErr != nil {
		t.Fatalf("go build ./cmd/meshwarden: %v\n%s", cliErr, cliOut)
	}
	return cliBin
}

// TestSystemdAnalyzeVerify runs systemd's own checker on every unit (with
// the binary path pointed at a freshly built meshwarden): a misspelt key,
// a bad value or a missing executable fails, warnings included.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// .ci/run installs Debian's systemd package, but a machine that
		// cannot (no init in a container) still runs every other test.
		t.Skip("systemd-analyze not found (Debian package systemd provides it): apt-get install systemd")
	}
	bin := cli(t)
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) != 3 {
		t.Fatalf("units: %v %v", units, err)
	}
	dir := t.TempDir()
	var copies []string
	for _, u := range units {
		dst := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(dst, []byte(strings.ReplaceAll(read(t, u), "/usr/local/bin/meshwarden", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, dst)
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, copies...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitPreStartFlags: every flag an ExecStartPre= passes to meshwarden
// is one its command accepts (ExecStart= is TestUnitFlags').
func TestUnitPreStartFlags(t *testing.T) {
	bin := cli(t)
	units, _ := filepath.Glob("systemd/*.service")
	flag := regexp.MustCompile(`^--[a-z0-9-]+`)
	checked := 0
	for _, u := range units {
		for _, args := range execLines(t, u, "ExecStartPre=") {
			if len(args) < 2 || args[0] != "/usr/local/bin/meshwarden" {
				continue
			}
			out, err := exec.Command(bin, args[1], "--help").CombinedOutput()
			if err != nil {
				t.Fatalf("%s: meshwarden %s --help: %v", u, args[1], err)
			}
			for _, a := range args[2:] {
				if f := flag.FindString(a); f != "" && !strings.Contains(string(out), "      "+f+" ") {
					t.Errorf("%s: ExecStartPre meshwarden %s has no flag %s", u, args[1], f)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no ExecStartPre= runs meshwarden: the gateway unit's preflight is gone")
	}
}

// execLines returns the words of every line of unit starting with key
// (continuation lines joined).
func execLines(t *testing.T, unit, key string) [][]string {
	t.Helper()
	var out [][]string
	var cur strings.Builder
	in := false
	for _, line := range strings.Split(read(t, unit), "\n") {
		if strings.HasPrefix(line, key) {
			in, line = true, strings.TrimPrefix(line, key)
		}
		if !in {
			continue
		}
		more := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
		if !more {
			out = append(out, strings.Fields(cur.String()))
			cur.Reset()
			in = false
		}
	}
	return out
}
