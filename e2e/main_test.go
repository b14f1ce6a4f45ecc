// Package e2e runs the whole product — a real Consul agent, the control
// plane, the audit collector and the gateway as separate processes, two
// upstream versions and the .wasm filters — and asserts the demo's story and
// its behaviour under faults, by counting requests, not by "no error".
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
	"github.com/meshwarden/meshwarden/filters"
)

// env is built once per test binary by TestMain.
type env struct {
	binary     string
	filtersDir string
	policyDir  string
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func build(tmp string) (*env, error) {
	root := repoRoot()
	e := &env{binary: filepath.Join(tmp, "meshwarden"), filtersDir: os.Getenv("MESHWARDEN_FILTERS_DIR"), policyDir: filepath.Join(root, "policies", "examples")}
	cmd := exec.Command("go", "build", "-o", e.binary, "./cmd/meshwarden")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build meshwarden: %w\n%s", err, out)
	}
	if e.filtersDir == "" {
		e.filtersDir = filepath.Join(tmp, "filters")
	}
	for _, name := range filters.Order() {
		out := filepath.Join(e.filtersDir, name+".wasm")
		if _, err := os.Stat(out); err == nil && os.Getenv("MESHWARDEN_FILTERS_DIR") != "" {
			continue // built by `make filters`
		}
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./filters/"+name+"/wasm")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build filter %s: %w\n%s", name, err, b)
		}
	}
	return e, nil
}

var testEnv *env // set once in TestMain, read-only afterwards

func TestMain(m *testing.M) {
	flag.Parse()
	tmp, err := os.MkdirTemp("", "mw-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(tmp)
		if !testing.Short() {
			e, err := build(tmp)
			if err != nil {
				fmt.Fprintln(os.Stderr, "e2e:", err)
				return 1
			}
			testEnv = e
		}
		return m.Run()
	}()
	os.Exit(code)
}

// startStack brings up a full stack for one test.
func startStack(t *testing.T, mtls bool) *demo.Stack {
	t.Helper()
	return startStackOpts(t, demo.StackOptions{MTLS: mtls})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
