package filters

import (
	"slices"
	"testing"
)

func TestOrder(t *testing.T) {
	got := Order()
	if want := []string{"dye", "audit", "trace"}; !slices.Equal(got, want) {
		t.Fatalf("Order() = %v, want %v", got, want)
	}
}
