package e2e

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
)

// TestDemoStory asserts what `make demo` shows.
func TestDemoStory(t *testing.T) {
	st := startStack(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out strings.Builder
	const users = 200
	sum, err := demo.Story(ctx, st, users, io.MultiWriter(&out))
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.OptIn.ByVersion["v2"]; got != 20 || sum.OptIn.Failed != 0 {
		t.Errorf("opt-in canary: %d/20 to v2, %d failed; want 20/20", got, sum.OptIn.Failed)
	}
	// The lane travels in x-mw-dye and in baggage; the caller's own baggage
	// members stay.
	if sum.UpstreamDye != "canary" || !strings.Contains(sum.UpstreamBaggage, "mw-dye=canary") || !strings.Contains(sum.UpstreamBaggage, "app=shop") {
		t.Errorf("upstream saw x-mw-dye=%q baggage=%q; want the canary lane in both and app=shop kept", sum.UpstreamDye, sum.UpstreamBaggage)
	}
	if sum.Users.Failed != 0 || sum.UsersAgain.Failed != 0 {
		t.Errorf("split traffic failed: %d + %d", sum.Users.Failed, sum.UsersAgain.Failed)
	}
	canary := 0
	for _, v := range sum.Users.Lanes {
		if v == "canary@v2" {
			canary++
		} else if v != "default@v1" {
			t.Errorf("a user landed in lane@version %q: lanes must route to their subset", v)
		}
	}
	// 10% of 200 users; a binomial(200, 0.1) is within [6, 36] with overwhelming probability.
	if canary < 6 || canary > 36 {
		t.Errorf("sticky 10%% split put %d of %d users on canary", canary, users)
	}
	if sum.StickyMismatch != 0 {
		t.Errorf("%d users changed lane between passes; the split must be sticky", sum.StickyMismatch)
	}
	if got := sum.Spoofed.ByVersion["v2"]; got != 0 || sum.SpoofUsers < 10 || sum.Spoofed.ByVersion["v1"] != sum.SpoofUsers {
		t.Errorf("spoofed x-mw-dye honoured: %v", sum.Spoofed.ByVersion)
	}
	if sum.Transfers != 5 {
		t.Errorf("fail-closed transfers answered 200: %d of 5", sum.Transfers)
	}
	if sum.AuditRecords < 2*sum.Transfers {
		t.Errorf("audit records: %d, want at least intent+outcome per transfer (%d)", sum.AuditRecords, 2*sum.Transfers)
	}
	if !sum.VerifyOK || strings.Contains(sum.VerifyOutput, "no signed checkpoint") {
		t.Errorf("audit verify failed:\n%s", sum.VerifyOutput)
	}
	// The plane runs secure by default: an attacker gets nothing, an
	// operator gets a dump without keys.
	if tr := sum.Trust; tr == nil || tr.AnonymousXDS != "Unauthenticated" || tr.ImpersonatedXDS != "PermissionDenied" ||
		tr.AnonymousAdmin != 401 || tr.OperatorDump != 200 || !tr.DumpRedacted {
		t.Errorf("zero-trust section: %+v; want Unauthenticated, PermissionDenied, 401, 200 with the key redacted", tr)
	}
	if len(sum.TraceSpans) < 3 {
		t.Errorf("trace %s: %d spans at the sink, want the filter's and the gateway's server and client spans", sum.TraceID, len(sum.TraceSpans))
	}
	// One tree: the trace filter's span is the only child of the caller's
	// span, and every other span nests inside the trace.
	ids := map[string]bool{}
	for _, s := range sum.TraceSpans {
		ids[s.SpanID] = true
	}
	var fromCaller []string
	for _, s := range sum.TraceSpans {
		switch {
		case s.ParentID == demo.ClientSpanID:
			fromCaller = append(fromCaller, s.Service+" "+s.Name)
		case !ids[s.ParentID]:
			t.Errorf("span %s %q (%s) has parent %q, neither the caller's span nor one in the trace", s.SpanID, s.Name, s.Service, s.ParentID)
		}
	}
	if len(fromCaller) != 1 || !strings.HasPrefix(fromCaller[0], "meshwarden-proxy ") {
		t.Errorf("children of the caller's span: %q, want only the trace filter's (meshwarden-proxy) span", fromCaller)
	}
}
