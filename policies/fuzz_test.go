package policies

import (
	"reflect"
	"testing"

	"github.com/meshwarden/meshwarden/internal/testenv/fuzzseed"
)

// addSeeds adds every example and golden input to the corpus.
func addSeeds(f *testing.F) {
	fuzzseed.AddFiles(f, "testdata/in/*.yaml", "examples/*.yaml", "examples/extra/*.yaml")
}

// FuzzLoadFiles feeds arbitrary bytes to the decoder and loader. It must
// never panic, must reject or accept consistently, must locate every error
// in the file, and must be deterministic.
//
//	go test ./policies -run '^$' -fuzz FuzzLoadFiles -fuzztime 60s
func FuzzLoadFiles(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		files := map[string][]byte{"fuzz.yaml": data}
		ps, diags, err := LoadFiles(files, testCatalog())
		if (err == nil) != (ps != nil) || (err != nil) != diags.HasErrors() {
			t.Fatalf("inconsistent: set %v, err %v, errors %d", ps != nil, err, len(diags.Errors))
		}
		for _, d := range append(diags.Errors, diags.Warnings...) {
			if d.File != "fuzz.yaml" || d.Message == "" {
				t.Fatalf("diagnostic without file or message: %+v", d)
			}
		}
		if ps != nil {
			if err := ps.Validate(); err != nil {
				t.Fatalf("accepted set fails ir validation: %v", err)
			}
			if ps.Revision != Revision(files) {
				t.Fatalf("revision mismatch")
			}
		}
		ps2, diags2, _ := LoadFiles(files, testCatalog())
		if !reflect.DeepEqual(diags, diags2) || !reflect.DeepEqual(ps, ps2) {
			t.Fatalf("two loads of the same input differ")
		}
	})
}
