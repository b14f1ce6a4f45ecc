package consulwatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/ir"
)

func startConsul(t *testing.T) (*consulagent.Agent, *api.Client) {
	t.Helper()
	return consultest.Start(t)
}

func waitCatalog(t *testing.T, w *Watcher, what string, ok func(*ir.Catalog) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok(w.Catalog()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; catalog: %+v", what, w.Catalog().Services)
		}
		select {
		case <-w.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestWatcherOnRealConsul(t *testing.T) {
	_, c := startConsul(t)
	w := New(c, Options{WaitTime: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "echo-1", Name: "echo", Port: 9001, Tags: []string{"lane=canary"}, Meta: map[string]string{"version": "v2"},
		Check: &api.AgentServiceCheck{CheckID: "ttl-echo-1", TTL: "10m", Status: api.HealthWarning},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		action func() error
		ok     func(*ir.Catalog) bool
	}{
		{"registered with tags, meta, node address and datacenter; warning is not healthy", nil, func(cat *ir.Catalog) bool {
			s := cat.Services["echo"]
			if s == nil || len(s.Instances) != 1 {
				return false
			}
			in := s.Instances[0]
			return in.Address == "127.0.0.1" && in.Port == 9001 && !in.Healthy && in.Meta["version"] == "v2" &&
				in.Matches(map[string]string{"lane": "canary", "version": "v2"}) && cat.Index > 0 &&
				in.Datacenter == "dc1" && in.Region(ir.DefaultRegionKey) == "dc1" // no region node meta: the datacenter
		}},
		{"passing makes it healthy", func() error {
			return c.Agent().UpdateTTL("ttl-echo-1", "", api.HealthPassing)
		}, func(cat *ir.Catalog) bool {
			s := cat.Services["echo"]
			return s != nil && len(s.Instances) == 1 && s.Instances[0].Healthy
		}},
		{"deregistered service leaves the catalog", func() error {
			return c.Agent().ServiceDeregister("echo-1")
		}, func(cat *ir.Catalog) bool { return cat.Services["echo"] == nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.action != nil {
				if err := tc.action(); err != nil {
					t.Fatal(err)
				}
			}
			waitCatalog(t, w, tc.name, tc.ok)
		})
	}
	if st := w.Status(); !st.Synced || st.Stale || st.Index == 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	w := New(nil, Options{BackoffBase: time.Millisecond, BackoffMax: 4 * time.Millisecond})
	for attempt := range 40 {
		start := time.Now()
		if !w.backoff(context.Background(), attempt) {
			t.Fatal("backoff reported a cancelled context")
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("attempt %d slept %v, bound is 4ms (+scheduling)", attempt, d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w2 := New(nil, Options{BackoffBase: time.Hour, BackoffMax: time.Hour})
	if w2.backoff(ctx, 0) {
		t.Fatal("backoff ignored a cancelled context")
	}
}

// TestRecoversAfterOutageWithoutChanges: after Consul comes back with the
// same catalog, the watcher must stop reporting stale promptly, not when a
// blocking query on the old index finally times out.
func TestRecoversAfterOutageWithoutChanges(t *testing.T) {
	ctx0, cancel0 := context.WithTimeout(context.Background(), 60*time.Second)
	a, err := consulagent.Start(ctx0, consulagent.Options{DataDir: t.TempDir()})
	cancel0()
	if err != nil {
		t.Fatalf("consul: %v", err)
	}
	t.Cleanup(a.Stop)
	c, err := a.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 80, Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	// WaitTime far longer than the test: recovery must not depend on it.
	w := New(c, Options{WaitTime: 5 * time.Minute, BackoffMax: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitCatalog(t, w, "web", func(cat *ir.Catalog) bool { return cat.Services["web"] != nil })
	a.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for !w.Status().Stale {
		if time.Now().After(deadline) {
			t.Fatalf("never reported stale while Consul was down: %+v", w.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	if err := a.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for w.Status().Stale {
		if time.Now().After(deadline) {
			t.Fatalf("still stale 20s after Consul came back: %+v", w.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w.Catalog().Services["web"] == nil {
		t.Fatalf("lost the service across the outage: %+v", w.Catalog().Services)
	}
}

// TestStalenessHungAgent stops the agent's process without killing it: it
// keeps its connections and answers nothing. The watcher must report the
// catalog stale once the silence outlasts a blocking query, and current
// again once the agent answers.
func TestStalenessHungAgent(t *testing.T) {
	a, c := startConsul(t)
	w := New(c, Options{WaitTime: time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); _ = a.Resume(); <-done })
	waitCatalog(t, w, "the first sync", func(*ir.Catalog) bool { return w.Status().Synced })
	if st := w.Status(); st.Stale {
		t.Fatalf("stale before the agent hung: %+v", st)
	}
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	deadline := paused.Add(15 * time.Second)
	for !w.Status().Stale {
		if time.Now().After(deadline) {
			t.Fatalf("a hung agent is still reported current after %s: %+v", time.Since(paused), w.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := w.Status()
	if st.Staleness < time.Second || !strings.Contains(st.LastError, "hung") {
		t.Errorf("stale status %+v: want the silence and a reason naming a hung agent", st)
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for w.Status().Stale {
		if time.Now().After(deadline) {
			t.Fatalf("still stale after the agent resumed: %+v", w.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
