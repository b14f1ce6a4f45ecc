package policies

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeLog(t *testing.T) (string, []*ChangeRecord) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "changes.jsonl")
	l, err := OpenChangeLog(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*ChangeRecord
	prev := ""
	for i, rev := range []string{strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)} {
		r, err := l.Append(context.Background(), Change{
			Identity: "alice", Time: time.Unix(1700000000+int64(i), 0), Revision: rev, Previous: prev,
			Source: "policies/", Diff: "--- a\n+++ b\n@@ -1 +1 @@\n-old" + rev[:1] + "\n+new\n",
		})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		prev = rev
	}
	return path, recs
}

func TestChangeLogChain(t *testing.T) {
	path, recs := writeLog(t)
	got, err := ReadChangeLog(path)
	if err != nil {
		t.Fatalf("verify a good log: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d records, want 3", len(got))
	}
	for i, r := range got {
		if r.Hash != recs[i].Hash || r.OpType != OpPolicyApply || r.Subject != "alice" || r.Seq != uint64(i+1) {
			t.Errorf("record %d = %+v, want hash %s", i, r.Event, recs[i].Hash)
		}
	}
	if got[1].PrevHash != got[0].Hash {
		t.Errorf("record 2 is not chained to record 1")
	}
	// Reopening continues the chain.
	l, err := OpenChangeLog(path)
	if err != nil {
		t.Fatal(err)
	}
	r4, err := l.Append(context.Background(), Change{Identity: "bob", Revision: strings.Repeat("d", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if r4.Seq != 4 || r4.PrevHash != recs[2].Hash {
		t.Errorf("after reopen: seq %d prev %s, want 4 and %s", r4.Seq, r4.PrevHash, recs[2].Hash)
	}
	if _, err := ReadChangeLog(path); err != nil {
		t.Errorf("verify after reopen: %v", err)
	}
	if _, err := l.Append(context.Background(), Change{Revision: "x"}); err == nil {
		t.Errorf("append without identity succeeded")
	}
}

func TestChangeLogTamper(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(lines []string) []string
		want   string
	}{
		{"altered subject", func(l []string) []string {
			l[1] = strings.Replace(l[1], `"subject":"alice"`, `"subject":"mallory"`, 1)
			return l
		}, "was altered"},
		{"altered diff", func(l []string) []string {
			l[2] = strings.Replace(l[2], `+new`, `+evil`, 1)
			return l
		}, "diff was altered"},
		{"dropped record", func(l []string) []string { return append(l[:1], l[2:]...) }, "seq 3, want 2"},
		{"reordered", func(l []string) []string { l[1], l[2] = l[2], l[1]; return l }, "seq 3, want 2"},
		{"torn last record", func(l []string) []string {
			l[2] = l[2][:len(l[2])/2]
			return l
		}, "the last record is incomplete"},
		{"unknown field", func(l []string) []string {
			l[0] = strings.Replace(l[0], `{"id"`, `{"extra":1,"id"`, 1)
			return l
		}, "not a change record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, _ := writeLog(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := tc.tamper(strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"))
			out := strings.Join(lines, "\n") + "\n"
			if tc.name == "torn last record" {
				out = strings.TrimSuffix(out, "\n")
			}
			if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = ReadChangeLog(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadChangeLog = %v, want an error containing %q", err, tc.want)
			}
			if _, err := OpenChangeLog(path); err == nil {
				t.Errorf("OpenChangeLog accepted a tampered log")
			}
		})
	}
}

// TestChangeLogConcurrentWriters appends from two ChangeLog values on the
// same file (as two CLI processes would) at once: the file lock keeps one
// unbroken chain.
func TestChangeLogConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "changes.jsonl")
	a, err := OpenChangeLog(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenChangeLog(path)
	if err != nil {
		t.Fatal(err)
	}
	const each = 20
	errs := make(chan error, 2*each)
	var wg sync.WaitGroup
	for _, l := range []*ChangeLog{a, b} {
		wg.Add(1)
		go func(l *ChangeLog) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := l.Append(context.Background(), Change{Identity: "ci", Revision: strings.Repeat("e", 64), Diff: "d"})
				errs <- err
			}
		}(l)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	recs, err := ReadChangeLog(path)
	if err != nil {
		t.Fatalf("chain broken by concurrent writers: %v", err)
	}
	if len(recs) != 2*each {
		t.Errorf("%d records, want %d", len(recs), 2*each)
	}
}
