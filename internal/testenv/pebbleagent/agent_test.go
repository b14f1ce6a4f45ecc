package pebbleagent

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestStartStopRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := Start(ctx, Options{}); err == nil {
		t.Fatal("Start without ChallengePort succeeded")
	}
	a, err := Start(ctx, Options{ChallengePort: ln.Addr().(*net.TCPAddr).Port})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	roots, err := a.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !roots[0].IsCA {
		t.Fatal("Pebble's root is not a CA certificate")
	}
	a.Stop()
	if resp, err := a.HTTPClient().Get(a.DirectoryURL()); err == nil {
		resp.Body.Close()
		t.Fatal("directory still answers after Stop")
	}
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := a.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Equal(roots[0]) {
		t.Fatal("Pebble kept its root across a restart; tests rely on a fresh CA")
	}
}
