package policies

import (
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	lines := func(n int, change map[int]string) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			if c, ok := change[i]; ok {
				if c != "" {
					b.WriteString(c + "\n")
				}
				continue
			}
			b.WriteString("l" + string(rune('a'+i-1)) + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name string
		a, b string
		want string
	}{
		{"equal", "x\n", "x\n", ""},
		{"added file", "", "a\nb\n", "--- A\n+++ B\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"removed file", "a\n", "", "--- A\n+++ B\n@@ -1 +0,0 @@\n-a\n"},
		{"one line changed, context 3", lines(10, nil), lines(10, map[int]string{5: "NEW"}),
			"--- A\n+++ B\n@@ -2,7 +2,7 @@\n lb\n lc\n ld\n-le\n+NEW\n lf\n lg\n lh\n"},
		{"two distant changes, two hunks", lines(20, nil), lines(20, map[int]string{2: "X", 18: ""}),
			"--- A\n+++ B\n@@ -1,5 +1,5 @@\n la\n-lb\n+X\n lc\n ld\n le\n@@ -15,6 +15,5 @@\n lo\n lp\n lq\n-lr\n ls\n lt\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := UnifiedDiff("A", "B", tc.a, tc.b); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
