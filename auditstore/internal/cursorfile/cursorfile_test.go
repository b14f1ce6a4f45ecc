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
