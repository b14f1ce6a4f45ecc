//go:build !wasip1

package kittest

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

type quietContext struct{ proxywasm.DefaultHttpContext }

type bodyReader struct{ proxywasm.DefaultHttpContext }

func (*bodyReader) OnHttpResponseBody(int, bool) proxywasm.Action { return proxywasm.ActionPause }

// TestOwnBodyCallbacks: a body callback a context defines is told apart
// from the no-op one it embeds.
func TestOwnBodyCallbacks(t *testing.T) {
	if own := ownBodyCallbacks(&quietContext{}); len(own) != 0 {
		t.Fatalf("embedded no-op callbacks counted as own: %v", own)
	}
	own := ownBodyCallbacks(&bodyReader{})
	if len(own) != 1 || !strings.HasPrefix(own[0], "OnHttpResponseBody (") || !strings.Contains(own[0], "bodies_test.go") {
		t.Fatalf("own callbacks %v, want OnHttpResponseBody from bodies_test.go", own)
	}
}
