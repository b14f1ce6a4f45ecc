package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/gateway"
	"github.com/meshwarden/meshwarden/internal/exitcode"
)

// TestProfileFromGateway: 'meshwarden profile' fetches a gzip'd profile
// from a real gateway's admin port with its admin token, and says what is
// wrong otherwise.
func TestProfileFromGateway(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	wrongFile := filepath.Join(dir, "wrong.token")
	if err := os.WriteFile(tokenFile, []byte("adm1n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrongFile, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	alis, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.New(ctx, gateway.Config{XDSAddress: deadAddr(t), XDSInsecure: true, NodeID: "gw-profile", Listener: lis, AdminListener: alis,
		ProfileTokenFile: tokenFile, XDSMinBackoff: 50 * time.Millisecond, XDSMaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = g.Close() })
	admin := "http://" + alis.Addr().String()
	out := filepath.Join(dir, "heap.pb.gz")
	if _, _, err := runCLI(t, "profile", "heap", "--gateway", admin, "--admin-token-file", tokenFile, "-o", out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("%s: %d bytes, %v: want a gzip'd profile", out, len(b), err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"profile", "heap", "--gateway", admin, "--admin-token-file", wrongFile, "-o", out}, exitcode.Failure, "401 Unauthorized"},
		{[]string{"profile", "heap", "--gateway", admin, "-o", out}, exitcode.Usage, "--gateway needs --admin-token-file"},
		{[]string{"profile", "memory", "-o", out}, exitcode.Usage, "give one of cpu, heap"},
		{[]string{"profile", "heap"}, exitcode.Usage, "-o FILE is required"},
		{[]string{"profile", "cpu", "--seconds", "0", "-o", out}, exitcode.Usage, "give 1 to 300"},
	} {
		_, _, err := runCLI(t, tc.args...)
		if exitcode.Of(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (exit %d), want exit %d and %q", tc.args, err, exitcode.Of(err), tc.code, tc.want)
		}
	}
}
