package policies

import (
	"strings"
	"testing"
)

// TestLoadSet: the plane's loader refuses a set with an error whole, naming
// the file, and returns the set otherwise.
func TestLoadSet(t *testing.T) {
	good := "apiVersion: meshwarden.io/v1alpha1\nkind: DyePolicy\nmetadata:\n  name: d\nspec:\n  rules: []\n"
	if ps, err := LoadSet(map[string][]byte{"dye.yaml": []byte(good)}, nil); err != nil || ps == nil {
		t.Fatalf("good set: %v, %v", ps, err)
	}
	ps, err := LoadSet(map[string][]byte{"bad.yaml": []byte("kind: NoSuchKind\n")}, nil)
	if err == nil || ps != nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("bad set: %v, %v; want a refusal naming bad.yaml", ps, err)
	}
}
