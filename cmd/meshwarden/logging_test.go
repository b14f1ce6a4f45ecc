package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLogFlagsOnEveryLongRunningCommand: the plane, the gateway, the audit
// collector and the demo take --log-format and --log-level (help golden).
func TestLogFlagsOnEveryLongRunningCommand(t *testing.T) {
	var b strings.Builder
	line := regexp.MustCompile(`(?m)^\s+(?:-v, )?--(log-format|log-level|verbose|mutex-profile-fraction|block-profile-rate)\b.*$`)
	for _, args := range [][]string{{"controlplane"}, {"gateway"}, {"audit", "collector"}, {"demo"}} {
		out, _, err := runCLI(t, append(args, "--help")...)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("$ meshwarden " + strings.Join(args, " ") + " --help | grep log/profile flags\n")
		for _, m := range line.FindAllString(out, -1) {
			b.WriteString(strings.Join(strings.Fields(m), " ") + "\n")
		}
		b.WriteString("\n")
	}
	golden(t, "log-flags.golden", b.String())
}

// TestCollectorLogsJSON: the audit collector logs through slog, one JSON
// object per line with --log-format json, and --log-level filters.
func TestCollectorLogsJSON(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "audit.key")
	if _, _, err := runCLI(t, "audit", "keygen", "--out", key, "--pub", filepath.Join(dir, "audit.pub")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MESHWARDEN_AUDIT_TOKEN", "tok")
	addrFile := filepath.Join(dir, "addr")
	run := func(level string) string {
		t.Helper()
		os.Remove(addrFile)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		root := newRootCmd()
		var stderr bytes.Buffer
		root.SetErr(&stderr)
		root.SetOut(&bytes.Buffer{})
		root.SetArgs([]string{"audit", "collector", "--dir", filepath.Join(dir, "wal"), "--key", key, "--listen", "127.0.0.1:0",
			"--addr-file", addrFile, "--log-format", "json", "--log-level", level})
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(ctx) }()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(addrFile); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the collector did not write --addr-file within 20s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("collector: %v\n%s", err, stderr.String())
		}
		return stderr.String()
	}
	out := run("info")
	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not a JSON line: %q (%v)", l, err)
		}
		if rec["component"] != "audit-collector" {
			t.Errorf("record without component=audit-collector: %q", l)
		}
		msgs = append(msgs, rec["msg"].(string))
	}
	if got := strings.Join(msgs, ","); !strings.Contains(got, "wal opened") || !strings.Contains(got, "serving") || !strings.Contains(got, "stopped") {
		t.Fatalf("messages %q, want wal opened, serving, stopped", got)
	}
	if out := run("error"); strings.TrimSpace(out) != "" {
		t.Fatalf("--log-level error still logged: %q", out)
	}
}
