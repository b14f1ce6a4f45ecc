package query

import (
	"context"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// ComplianceTrail writes a small trail of tagged records at base (three
// transfers, one blocked profile update, one untagged read) and returns
// its directory; the CLI tests use it too.
func complianceTrail(t *testing.T, base time.Time) string {
	t.Helper()
	dir := t.TempDir()
	w, err := wal.Open(context.Background(), wal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pci := []string{"pci", "gdpr", "region=eu"}
	var evs []auditevent.Event
	for i, id := range []string{"t1", "t2", "t3"} {
		ts := base.Add(time.Duration(i) * time.Minute).UnixNano()
		intent := auditevent.Event{ID: id + "-intent", Phase: auditevent.PhaseIntent, OpType: "FUND_TRANSFER", Timestamp: ts, Tags: pci,
			Fields: map[string]string{"body:card.number": "************1111", "body:beneficiary.iban": "hmac-sha256:pii-2026-12:ab"}, KeyID: "pii-2026-12",
			PII: []string{"card@body", "iban@body"}, PIIAction: "mask-in-audit"}
		out := intent
		out.ID, out.Phase, out.Status, out.Timestamp = id+"-outcome", auditevent.PhaseOutcome, 201, ts+1
		evs = append(evs, intent, out)
	}
	evs = append(evs,
		auditevent.Event{ID: "p1-outcome", Phase: auditevent.PhaseOutcome, OpType: "PROFILE_UPDATE", Timestamp: base.Add(5 * time.Minute).UnixNano(),
			Tags: []string{"gdpr"}, PII: []string{"card@body"}, PIIAction: "block", Blocked: "pii:card", Status: 422},
		auditevent.Event{ID: "p2-outcome", Phase: auditevent.PhaseOutcome, OpType: "PROFILE_UPDATE", Timestamp: base.Add(6 * time.Minute).UnixNano(),
			Tags: []string{"gdpr"}, PII: []string{"scan-limit@body"}, PIIAction: "block", Blocked: "scan-limit", Status: 413},
		auditevent.Event{ID: "r1-outcome", Phase: auditevent.PhaseOutcome, OpType: "READ", Timestamp: base.Add(7 * time.Minute).UnixNano(), Status: 200},
	)
	if _, err := w.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReportPerTag(t *testing.T) {
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	dir := complianceTrail(t, base)
	rep, err := BuildReport(context.Background(), dir, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]TagReport{}
	var order []string
	for _, r := range rep.Tags {
		got[r.Tag] = r
		order = append(order, r.Tag)
	}
	if len(order) != 4 || order[0] != "gdpr" || order[3] != NoTag {
		t.Fatalf("rows %v", order)
	}
	pci := got["pci"]
	// 3 requests × (2 field values + 2 detections under mask-in-audit).
	if pci.Requests != 3 || pci.Records != 6 || pci.MaskedFields != 12 || pci.Detections != 6 || pci.Blocked != 0 ||
		pci.ByAction["hash"] != 3 || pci.ByAction["mask"] != 3 || pci.ByAction["mask-in-audit"] != 6 || pci.ByDetector["card"] != 3 ||
		len(pci.KeyIDs) != 1 || pci.KeyIDs[0] != "pii-2026-12" {
		t.Errorf("pci = %+v", pci)
	}
	gdpr := got["gdpr"]
	if gdpr.Requests != 5 || gdpr.Blocked != 2 || gdpr.ByReason["pii:card"] != 1 || gdpr.ByReason["scan-limit"] != 1 || gdpr.ScanLimited != 1 || gdpr.Detections != 7 {
		t.Errorf("gdpr = %+v", gdpr)
	}
	if u := got[NoTag]; u.Requests != 1 || u.MaskedFields != 0 {
		t.Errorf("untagged = %+v", u)
	}
	// A period and a tag filter.
	rep, err = BuildReport(context.Background(), dir, Filter{From: base.Add(2 * time.Minute), To: base.Add(6 * time.Minute), Tag: "gdpr"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Tags {
		if r.Tag == "gdpr" && (r.Requests != 2 || r.Blocked != 1) {
			t.Errorf("window gdpr = %+v", r)
		}
	}
	n, err := Scan(context.Background(), dir, Filter{Tag: "pci"}, func(*auditevent.Event, []byte) error { return nil })
	if err != nil || n != 6 {
		t.Errorf("query --tag pci matched %d (%v), want 6", n, err)
	}
}
