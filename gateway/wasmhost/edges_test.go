package wasmhost

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// edgeRow is one row of testdata/edges.tsv, the conformance table of
// proxy-wasm-cpp-host edge cases (README "Conformance with
// proxy-wasm-cpp-host"): a probe of the edges guest, the answer Envoy's
// host gives (status code, then what was written or read), and why.
type edgeRow struct{ probe, want, why string }

func edgeRows(t *testing.T) []edgeRow {
	t.Helper()
	f, err := os.Open("testdata/edges.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []edgeRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 3 {
			t.Fatalf("edges.tsv: %q: want probe<TAB>answer<TAB>why", line)
		}
		rows = append(rows, edgeRow{c[0], c[1], c[2]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestEdges runs the edges guest (empty configuration, two x-rep header
// lines) in wazero under both WASI modes and checks every row of
// testdata/edges.tsv; filters/internal/v8host's TestEdges checks the same
// rows under V8 with cpp-host's semantics.
func TestEdges(t *testing.T) {
	rows := edgeRows(t)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []WASIMode{WASIEnvoy, WASIFull} {
		r := newRuntime(t, RuntimeConfig{WASI: mode})
		p := newPlugin(t, r, "edges", PluginConfig{RootID: "edges-root"})
		h := reqHeaders("x-rep", "a", "x-rep", "b")
		if res := request(t, p, StreamInfo{}, h); res.Action != Continue || res.Err != nil {
			t.Fatalf("%s: %v %v", mode, res.Action, res.Err)
		}
		for _, row := range rows {
			t.Run(string(mode)+"/"+row.probe, func(t *testing.T) {
				if got, _ := h.Get("x-e-" + row.probe); got != row.want {
					t.Errorf("%s = %q, want %q (%s)", row.probe, got, row.want, row.why)
				}
				if !strings.Contains(string(readme), "`"+row.probe+"`") {
					t.Errorf("README.md's conformance table has no row for `%s`", row.probe)
				}
			})
		}
	}
}
