package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// TestTrustedModulesSkipDeadlinesOthersKeepThem: one Runtime runs a module
// listed in TrustedSHA256 without per-call deadlines and every other module
// with them.
func TestTrustedModulesSkipDeadlinesOthersKeepThem(t *testing.T) {
	headers := guest(t, "headers")
	sum := sha256.Sum256(headers)
	// Upper case and spaces, as a pasted sha256sum might have them.
	r := newRuntime(t, RuntimeConfig{MemoryLimitPages: 512, TrustedSHA256: []string{" " + strings.ToUpper(hex.EncodeToString(sum[:])) + " "}})

	trusted := newPlugin(t, r, "headers", PluginConfig{Name: "trusted-headers", PoolSize: 1})
	hostile := newPlugin(t, r, "hostile", PluginConfig{Name: "hostile", PoolSize: 1, CallTimeout: 200 * time.Millisecond})
	if trusted.mod.CallDeadline() {
		t.Fatal("the listed module has a call deadline; want none")
	}
	if !hostile.mod.CallDeadline() {
		t.Fatal("an unlisted module lost its call deadline")
	}
	if instrumented(trusted.mod) {
		t.Fatal("the listed module runs instrumented; want it as it is")
	}
	if !instrumented(hostile.mod) {
		t.Fatal("an unlisted module runs without the deadline instrumentation")
	}

	// The trusted module works beside the instrumented one.
	h := reqHeaders("x-mw-dye", "canary")
	if res := request(t, trusted, StreamInfo{}, h); res.Action != Continue || res.Err != nil {
		t.Fatalf("trusted filter: %v %v", res.Action, res.Err)
	}
	if lane, _ := h.Get("x-mw-lane"); lane != "canary" {
		t.Fatalf("trusted filter set x-mw-lane=%q, want canary", lane)
	}
	// An unlisted guest stuck in a loop is still stopped by its deadline.
	res := request(t, hostile, StreamInfo{}, reqHeaders("x-hostile", "loop"))
	if res.Err == nil || !strings.Contains(res.Err.Error(), "timeout") || res.Action != Reply || res.Reply.Status != 503 {
		t.Fatalf("looping untrusted guest: %v %v %+v, want a timeout answered 503", res.Action, res.Err, res.Reply)
	}
	if st := hostile.Stats(); st.Timeouts != 1 {
		t.Fatalf("hostile plugin timeouts = %d, want 1", st.Timeouts)
	}
	// And the trusted plugin keeps serving.
	if res := request(t, trusted, StreamInfo{}, reqHeaders()); res.Action != Continue || res.Err != nil {
		t.Fatalf("trusted filter after the timeout: %v %v", res.Action, res.Err)
	}
}

func TestTrustedSHA256MustBeHex(t *testing.T) {
	for _, bad := range []string{"", "abc", strings.Repeat("g", 64), strings.Repeat("a", 63)} {
		_, err := NewRuntime(context.Background(), RuntimeConfig{TrustedSHA256: []string{bad}})
		if err == nil || !strings.Contains(err.Error(), "64 hex digits") {
			t.Errorf("TrustedSHA256 %q: err = %v, want one that asks for 64 hex digits", bad, err)
		}
	}
}
