package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, OK},
		{errors.New("consul unreachable"), Failure},
		{Finding(errors.New("tampered")), Findings},
		{fmt.Errorf("verify: %w", Finding(errors.New("tampered"))), Findings},
		{Usagef("--dir is required"), Usage},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if err := Usagef("--%s is required", "dir"); err.Error() != "--dir is required" {
		t.Errorf("message %q", err)
	}
}
