package v8host_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/meshwarden/meshwarden/filters/internal/v8host"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
)

// v8VersusN is the number of chain requests of each V8 run.
const v8VersusN = 20000

// BenchmarkV8BundleVersus runs the chain's audited, dyed, traced PUT
// v8VersusN times under V8 (Envoy's engine) through the bundle module as
// three VMs (root ids dye, audit, trace): "old" is the .wasm file
// MW_OLD_BUNDLE names, "new" MW_NEW_BUNDLE or, unset, the bundle built from
// this tree. Each iteration runs old then new, each in its own node
// process; it reports each one's median run time (start-up included) and
// old ÷ new. Skipped without MW_OLD_BUNDLE or node.
//
//	MW_OLD_BUNDLE=/tmp/old.wasm go test -run '^$' -bench V8BundleVersus -benchtime 3x ./filters/internal/v8host/
func BenchmarkV8BundleVersus(b *testing.B) {
	oldPath := os.Getenv("MW_OLD_BUNDLE")
	if oldPath == "" {
		b.Skip("MW_OLD_BUNDLE names no bundle module to compare with")
	}
	needNode(b)
	newPath := os.Getenv("MW_NEW_BUNDLE")
	if newPath == "" {
		dir := b.TempDir()
		if _, err := kittest.Build("../../bundle/wasm", dir); err != nil {
			b.Fatal(err)
		}
		newPath = filepath.Join(dir, "guest.wasm")
	}
	input := func(wasm string) v8host.Input {
		in := loadInput(b, v8VersusN, "pr533")
		in.Environ = nil // the default GOGC, no gctrace
		in.Requests = in.Requests[:1]
		in.Requests[0].Repeat = v8VersusN
		in.Requests[0].RequestBody = nil
		for i := range in.VMs {
			in.VMs[i].RootID, in.VMs[i].Wasm = in.VMs[i].Name, wasm
		}
		return in
	}
	var ms [2][]float64
	for b.Loop() {
		for i, p := range [2]string{oldPath, newPath} {
			out := run(b, input(p))
			if out.RequestCount != v8VersusN {
				b.Fatalf("%s: %d requests ran, want %d", p, out.RequestCount, v8VersusN)
			}
			ms[i] = append(ms[i], out.ElapsedMs)
		}
	}
	var med [2]float64
	for i, name := range [2]string{"old", "new"} {
		slices.Sort(ms[i])
		med[i] = ms[i][len(ms[i])/2]
		b.ReportMetric(med[i], name+"-ms")
	}
	b.ReportMetric(med[0]/med[1], "speedup")
}
