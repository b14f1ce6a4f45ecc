package logsink

import (
	"log/slog"
	"testing"
)

func TestSinkKeepsLevelAndMessage(t *testing.T) {
	s := &Sink{}
	log := slog.New(s).With("k", "v").WithGroup("g")
	log.Warn("disk low", "free", 3)
	log.Info("started")
	if got, want := s.All(), "WARN disk low\nINFO started"; got != want {
		t.Fatalf("All() = %q, want %q", got, want)
	}
	if !s.Contains("WARN disk") || s.Contains("free") {
		t.Errorf("Contains: lines %q", s.Lines())
	}
	lines := s.Lines()
	lines[0] = "changed"
	if s.Lines()[0] != "WARN disk low" {
		t.Errorf("Lines() is not a copy")
	}
}
