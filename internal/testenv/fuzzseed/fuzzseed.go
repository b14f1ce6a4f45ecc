// Package fuzzseed seeds a fuzz corpus from files on disk (examples, golden
// inputs). Only tests import it.
package fuzzseed

import (
	"os"
	"path/filepath"
	"testing"
)

// AddFiles adds the content of every file matching patterns (filepath.Glob,
// relative to the test's package) to f's seed corpus. It fails f when a
// file cannot be read or when no pattern matches anything (a moved folder
// would otherwise leave the fuzzer without its seeds).
func AddFiles(f *testing.F, patterns ...string) {
	f.Helper()
	n := 0
	for _, pat := range patterns {
		files, err := filepath.Glob(pat)
		if err != nil {
			f.Fatalf("seed pattern %q: %v", pat, err)
		}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed file matches %q", patterns)
	}
}
