package kittest

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

var exampleRE = regexp.MustCompile("(?s)<!-- example: (\\S+) -->\n```json\n(.*?)\n```")

// READMEExamples checks that README.md (in the test's directory) shows at
// least min examples, each the verbatim content of the file named by its
// <!-- example: FILE --> marker, and that parse (the filter's ParseConfig)
// accepts each file.
func READMEExamples[T any](t *testing.T, min int, parse func([]byte) (T, error)) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := exampleRE.FindAllSubmatch(readme, -1)
	if len(found) < min {
		t.Fatalf("README.md has %d examples, want at least %d", len(found), min)
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
			if _, err := parse(want); err != nil {
				t.Errorf("%s: %v", file, err)
			}
		})
	}
}

// ConfigErrors checks that parse refuses configurations: each test is
// {name, configuration, a part of the error it must get}.
func ConfigErrors[T any](t *testing.T, parse func([]byte) (T, error), tests [][3]string) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt[0], func(t *testing.T) {
			_, err := parse([]byte(tt[1]))
			if err == nil || !strings.Contains(err.Error(), tt[2]) {
				t.Fatalf("ParseConfig(%s) error = %v, want it to contain %q", tt[1], err, tt[2])
			}
		})
	}
}

// ReadFile returns the content of a file of the test's directory.
func ReadFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
