package cursorfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cursor")
	if v, err := Read(p, "test cursor", "delete it"); err != nil || v != 0 {
		t.Fatalf("missing file: %d, %v; want 0, nil", v, err)
	}
	for _, v := range []uint64{7, 1 << 40, 3} {
		if err := Write(p, v, "test cursor"); err != nil {
			t.Fatal(err)
		}
		if got, err := Read(p, "test cursor", "delete it"); err != nil || got != v {
			t.Fatalf("Read after Write(%d): %d, %v", v, got, err)
		}
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	if err := os.WriteFile(p, []byte("12x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(p, "test cursor", "delete it to start over"); err == nil || !strings.Contains(err.Error(), "test cursor "+p+" is corrupt") || !strings.Contains(err.Error(), "delete it to start over") {
		t.Fatalf("corrupt cursor: %v", err)
	}
	if err := Write(filepath.Join(p, "no-such-dir", "c"), 1, "test cursor"); err == nil || !strings.Contains(err.Error(), "write test cursor") {
		t.Fatalf("unwritable cursor: %v", err)
	}
}

func TestCursors(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, "r.cursor", "c.cursor", "test cursor", "delete it")
	if err != nil || c.Records() != 0 || c.Checkpoints() != 0 {
		t.Fatalf("fresh dir: %v records %d checkpoints %d", err, c.Records(), c.Checkpoints())
	}
	if err := c.SetRecords(42); err != nil {
		t.Fatal(err)
	}
	if err := c.SetCheckpoints(3); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir, "r.cursor", "c.cursor", "test cursor", "delete it")
	if err != nil || again.Records() != 42 || again.Checkpoints() != 3 {
		t.Fatalf("reopened: %v records %d checkpoints %d, want 42 and 3", err, again.Records(), again.Checkpoints())
	}
	if err := os.WriteFile(filepath.Join(dir, "c.cursor"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, "r.cursor", "c.cursor", "test cursor", "delete it"); err == nil || !strings.Contains(err.Error(), "c.cursor is corrupt") {
		t.Fatalf("corrupt checkpoint cursor: %v", err)
	}
}
