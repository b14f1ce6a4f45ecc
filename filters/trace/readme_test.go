package trace

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEExamples checks that README.md shows each testdata example
// verbatim (after its <!-- example: FILE --> marker) and that each parses.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- example: (\\S+) -->\n```json\n(.*?)\n```")
	found := re.FindAllSubmatch(readme, -1)
	if len(found) < 1 {
		t.Fatalf("README.md has %d examples, want at least 1", len(found))
	}
	for _, m := range found {
		file, shown := string(m[1]), string(m[2])
		t.Run(file, func(t *testing.T) {
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(shown) {
				t.Errorf("README.md shows a different %s: update one from the other", file)
			}
			if _, err := ParseConfig(want); err != nil {
				t.Errorf("%s: %v", file, err)
			}
		})
	}
}
