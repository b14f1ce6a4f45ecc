package proc

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWaitEnds: WaitReady and WaitHTTPClient return nil once ready, and
// otherwise say whether the process exited, ctx ended or the bound passed.
func TestWaitEnds(t *testing.T) {
	sleeper := func(t *testing.T) *Proc {
		p, err := Start("sleeper", nil, "sleep", "30")
		if err != nil {
			t.Skipf("no sleep binary: %v", err)
		}
		t.Cleanup(p.Kill)
		return p
	}
	ctx := context.Background()
	never := func(context.Context) bool { return false }
	t.Run("ready", func(t *testing.T) {
		calls := 0
		if err := sleeper(t).WaitReady(ctx, 10*time.Second, time.Millisecond, func(context.Context) bool { calls++; return calls == 3 }); err != nil || calls != 3 {
			t.Fatalf("err %v after %d calls: want nil after 3", err, calls)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		if err := sleeper(t).WaitReady(ctx, 50*time.Millisecond, time.Millisecond, never); err == nil || !strings.Contains(err.Error(), "was not ready within 50ms") {
			t.Fatalf("err %v: want the bound named", err)
		}
	})
	t.Run("exited", func(t *testing.T) {
		p, err := Start("quitter", nil, "true")
		if err != nil {
			t.Skipf("no true binary: %v", err)
		}
		if err := p.WaitReady(ctx, 10*time.Second, time.Millisecond, never); err == nil || !strings.Contains(err.Error(), "quitter exited before it was ready") {
			t.Fatalf("err %v: want the exit named", err)
		}
	})
	t.Run("http canceled", func(t *testing.T) {
		c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		err := sleeper(t).WaitHTTPClient(c, &http.Client{Timeout: time.Second}, "http://127.0.0.1:1/")
		if err == nil || !strings.Contains(err.Error(), "did not answer 200 in time") {
			t.Fatalf("err %v: want the URL's silence named", err)
		}
	})
}

// TestFreeAddrBelowEphemeralRange: the addresses handed to child processes
// come from below the kernel's ephemeral range (where no outgoing
// connection can take them before the child binds), distinct when chosen
// together, and free.
func TestFreeAddrBelowEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	if lo <= minPickedPort+1000 {
		t.Skipf("ephemeral range starts at %d: no room below it", lo)
	}
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < minPickedPort || p >= lo || seen[p] {
			t.Fatalf("port %d: want distinct ports in [%d, %d)", p, minPickedPort, lo)
		}
		seen[p] = true
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr gave %s, which cannot be bound: %v", addr, err)
	}
	l.Close()
}
