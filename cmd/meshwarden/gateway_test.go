package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTrustedModulesFromDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := trustedModules(dir); err == nil || !strings.Contains(err.Error(), "no .wasm files") {
		t.Fatalf("empty dir: err = %v, want one that says no .wasm files are there", err)
	}
	content := []byte("\x00asm not really")
	if err := os.WriteFile(filepath.Join(dir, "dye.wasm"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	sums, err := trustedModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	if len(sums) != 1 || sums[filepath.Join(dir, "dye.wasm")] != hex.EncodeToString(want[:]) {
		t.Fatalf("sums = %v, want only dye.wasm with sha256 %x", sums, want)
	}
}
