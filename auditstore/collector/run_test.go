package collector

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// TestRunConfigValidate: without a WAL directory or a signing key the
// collector refuses to start, saying what to give.
func TestRunConfigValidate(t *testing.T) {
	for _, c := range []RunConfig{{KeyFile: "k"}, {Dir: "d"}} {
		if _, err := Start(context.Background(), c); err == nil || !strings.Contains(err.Error(), "--dir and --key are required") {
			t.Fatalf("Start(%+v): %v", c, err)
		}
	}
}

// TestStartClose: a collector started on an ephemeral port stores what it
// acknowledges, writes its address file, and on Close releases the port and
// leaves a WAL that reopens at the same head.
func TestStartClose(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "audit.key"), filepath.Join(dir, "audit.pub")
	if err := wal.GenerateKey(key, pub); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	walDir, addrFile := filepath.Join(dir, "wal"), filepath.Join(dir, "addr")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, RunConfig{Dir: walDir, KeyFile: key, Listen: "127.0.0.1:0", AddrFile: addrFile, TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(addrFile); err != nil || string(b) != p.Addr().String() {
		t.Fatalf("address file %q (%v), want %s", b, err, p.Addr())
	}
	u := "http://" + p.Addr().String() + auditevent.IngestPath
	if code, body := post(t, http.DefaultClient, u, "wrong", batchJSON(1, 0)); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d %s", code, body)
	}
	if code, body := post(t, http.DefaultClient, u, "s3cret", batchJSON(3, 0)); code != http.StatusOK {
		t.Fatalf("token from --token-file: %d %s", code, body)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting after Close")
	}
	w, err := wal.Open(ctx, wal.Options{Dir: walDir})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if h := w.Stats().Head; h != 3 {
		t.Fatalf("reopened head seq %d, want 3", h)
	}
}
