package moduleserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestServeByHash(t *testing.T) {
	dir := t.TempDir()
	v1 := []byte("\x00asm\x01\x00\x00\x00 dye v1")
	if err := os.WriteFile(filepath.Join(dir, "dye.wasm"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not a module"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := New(dir, nil)
	changed, err := s.Scan()
	if err != nil || !changed {
		t.Fatalf("first scan: changed=%v err=%v", changed, err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()

	tests := []struct {
		name string
		path string
		code int
		body []byte
	}{
		{"by hash", "/modules/" + sum(v1), 200, v1},
		{"unknown hash", "/modules/" + sum([]byte("x")), 404, nil},
		{"outside prefix", "/other", 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := probe.Get(t, srv.URL+tc.path)
			if code != tc.code {
				t.Fatalf("status %d, want %d", code, tc.code)
			}
			if tc.body != nil && string(body) != string(tc.body) {
				t.Fatalf("body %q, want %q", body, tc.body)
			}
		})
	}

	t.Run("list", func(t *testing.T) {
		_, body := probe.Get(t, srv.URL+"/modules/")
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || m["dye"] != sum(v1) {
			t.Fatalf("list = %v", m)
		}
	})

	t.Run("rebuild keeps the old hash servable", func(t *testing.T) {
		v2 := []byte("\x00asm\x01\x00\x00\x00 dye v2, longer")
		if err := os.WriteFile(filepath.Join(dir, "dye.wasm"), v2, 0o644); err != nil {
			t.Fatal(err)
		}
		// Ensure a distinct mtime even on coarse filesystems.
		later := time.Now().Add(2 * time.Second)
		if err := os.Chtimes(filepath.Join(dir, "dye.wasm"), later, later); err != nil {
			t.Fatal(err)
		}
		changed, err := s.Scan()
		if err != nil || !changed {
			t.Fatalf("rescan: changed=%v err=%v", changed, err)
		}
		if got := s.SHA256s()["dye"]; got != sum(v2) {
			t.Fatalf("dye sha = %s, want %s", got, sum(v2))
		}
		if code, _ := probe.Get(t, srv.URL+"/modules/"+sum(v1)); code != 200 {
			t.Fatalf("old build: status %d", code)
		}
		if changed, _ := s.Scan(); changed {
			t.Fatal("a scan with no file change reported a change")
		}
	})
}
