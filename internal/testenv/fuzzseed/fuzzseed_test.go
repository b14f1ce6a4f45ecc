package fuzzseed

import (
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// FuzzAddFiles checks that every file's bytes reach the fuzz function as a
// seed, and nothing else (go test without -fuzz runs the seeds only).
func FuzzAddFiles(f *testing.F) {
	dir := f.TempDir()
	want := map[string]bool{"alpha": true, "beta": true}
	for name := range want {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(name), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	AddFiles(f, filepath.Join(dir, "*.yaml"), filepath.Join(dir, "none-*.txt"))
	var mu sync.Mutex
	seen := map[string]bool{}
	fuzzing := false
	if fz := flag.Lookup("test.fuzz"); fz != nil && fz.Value.String() != "" {
		fuzzing = true
	}
	if !fuzzing {
		f.Cleanup(func() {
			if len(seen) != len(want) {
				f.Errorf("seeds run: %v, want %v", seen, want)
			}
		})
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if fuzzing {
			// What is checked is the seed corpus; mutated inputs (make fuzz
			// runs every Fuzz target) are not seeds.
			t.Skip("the check runs on the seeds only (go test without -fuzz)")
		}
		if !want[string(b)] {
			t.Fatalf("seed %q is not one of the files", b)
		}
		mu.Lock()
		seen[string(b)] = true
		mu.Unlock()
	})
}
