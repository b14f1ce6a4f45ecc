package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/query"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func TestAuditReportAndTagQuery(t *testing.T) {
	dir := t.TempDir()
	w, err := wal.Open(context.Background(), wal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).UnixNano()
	evs := []auditevent.Event{
		{ID: "t1-outcome", Phase: auditevent.PhaseOutcome, OpType: "FUND_TRANSFER", Timestamp: base, Status: 201, Tags: []string{"pci", "region=eu"},
			Fields: map[string]string{"body:card.number": "************1111", "header:x-customer-email": "hmac-sha256:pii-2026-12:00"}, KeyID: "pii-2026-12",
			PII: []string{"card@body"}, PIIAction: "flag"},
		{ID: "t2-outcome", Phase: auditevent.PhaseOutcome, OpType: "FUND_TRANSFER", Timestamp: base + 1, Status: 422, Tags: []string{"pci"},
			PII: []string{"card@body", "email@body"}, PIIAction: "block", Blocked: "pii:card,email"},
		{ID: "r1-outcome", Phase: auditevent.PhaseOutcome, OpType: "READ", Timestamp: base + 2, Status: 200},
		{ID: "late-outcome", Phase: auditevent.PhaseOutcome, OpType: "FUND_TRANSFER", Timestamp: base + int64(48*time.Hour), Status: 201, Tags: []string{"pci"}},
	}
	if _, err := w.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	w.Close()

	text := run(t, "report", "--dir", dir, "--from", "2026-12-01", "--to", "2026-12-02")
	for _, want := range []string{
		"Compliance report for " + dir + ", from 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z",
		"TAG  REQUESTS  RECORDS  MASKED FIELDS  PII DETECTIONS  OVER SCAN BOUND  BLOCKED",
		"pci         2        2              2               3                0        1",
		"masked fields:  2 (hash 1, mask 1)",
		"PII detections: 3 (card 2, email 1)",
		"blocked:        1 (pii:card,email 1)",
		"hash keys:      pii-2026-12",
		"(untagged)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	var rep query.Report
	if err := json.Unmarshal([]byte(run(t, "report", "--dir", dir, "--tag", "pci", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Tags) != 1 || rep.Tags[0].Tag != "pci" || rep.Tags[0].Requests != 3 || rep.Tags[0].Blocked != 1 {
		t.Errorf("json report = %+v", rep)
	}
	q := run(t, "query", "--dir", dir, "--tag", "pci", "-o", "text")
	if n := strings.Count(q, "\n"); n != 3 || !strings.Contains(q, "tags=pci,region=eu masked=2 pii=card@body(flag)") || !strings.Contains(q, "blocked=pii:card,email") {
		t.Errorf("query --tag pci:\n%s", q)
	}
	if q := run(t, "query", "--dir", dir, "--tag", "region=eu", "--count"); strings.TrimSpace(q) != "1" {
		t.Errorf("query --tag region=eu --count = %s", q)
	}
}
