package v8host_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/internal/v8host"
)

// TestEdges runs gateway/wasmhost's edges guest under V8 with cpp-host's
// semantics (empty configuration, two x-rep header lines) and checks every
// row of gateway/wasmhost/testdata/edges.tsv, the conformance table that
// gateway/wasmhost's TestEdges checks in wazero.
func TestEdges(t *testing.T) {
	needNode(t)
	const dir = "../../../gateway/wasmhost"
	wasm := filepath.Join(t.TempDir(), "edges.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", wasm, "./testdata/guests/edges")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the edges guest: %v\n%s", err, msg)
	}
	out := run(t, v8host.Input{
		VMs: []v8host.VM{{Name: "edges", Wasm: wasm, RootID: "edges-root"}},
		Requests: []v8host.Request{{RequestHeaders: [][2]string{
			{":method", "GET"}, {":path", "/p?q=1"}, {":authority", "example.test"}, {":scheme", "http"}, {"x-rep", "a"}, {"x-rep", "b"},
		}}},
	})
	f, err := os.Open(filepath.Join(dir, "testdata/edges.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	rows := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 3 {
			t.Fatalf("edges.tsv: %q: want probe<TAB>answer<TAB>why", line)
		}
		rows++
		t.Run(c[0], func(t *testing.T) {
			if got, _ := v8host.Header(out.Requests[0].RequestHeaders, "x-e-"+c[0]); got != c[1] {
				t.Errorf("%s = %q, want %q (%s)", c[0], got, c[1], c[2])
			}
		})
	}
	if rows == 0 {
		t.Fatal("edges.tsv has no rows")
	}
}
