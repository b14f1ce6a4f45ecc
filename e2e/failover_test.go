package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
)

// TestFailoverReplicaKilledUnderLoad runs two plane replicas; the gateway
// knows both. The replica it is connected to is killed (kill -9) under
// load: no request fails, the gateway moves to the other replica, and a
// policy change made there reaches it.
func TestFailoverReplicaKilledUnderLoad(t *testing.T) {
	st := startStackOpts(t, demo.StackOptions{Replicas: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := st.NewClient()
	if v, err := laneTarget(ctx, c); err != nil || v != "v2" {
		t.Fatalf("canary lane before the kill: %q %v", v, err)
	}
	l := getLoad(c, 50)
	time.Sleep(500 * time.Millisecond)
	st.Plane.Kill() // the first address: the one the gateway uses
	time.Sleep(2 * time.Second)
	l.stop()
	if l.failed.Load() != 0 || l.ok.Load() < 50 {
		t.Fatalf("while the gateway's replica was dead: %s", l)
	}
	// The surviving replica serves the next change (it watches the same
	// policy directory and the shared store).
	flipCanary(t, st, "v1")
	awaitLane(ctx, t, c, "v1", "the change through the surviving replica")
	if st.Replicas[0].Proc.Exited() {
		t.Fatal("the surviving replica exited")
	}
}
