package dyeing

import "testing"

func TestValidLane(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"canary", true}, {"v2", true}, {"a", true}, {"blue-green", true},
		{"", false}, {"Canary", false}, {"-x", false}, {"x-", false}, {"a b", false},
		{"x\n", false}, {string(make([]byte, 64)), false},
	} {
		if got := ValidLane(tc.in); got != tc.want {
			t.Errorf("ValidLane(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if err := CheckLane(tc.in); (err == nil) != tc.want {
			t.Errorf("CheckLane(%q) = %v", tc.in, err)
		}
	}
}
