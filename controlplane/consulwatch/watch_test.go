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

// runWatcher runs w until the test ends.
func runWatcher(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitStale waits until w reports its catalog stale (want) or current.
func waitStale(t *testing.T, w *Watcher, want bool, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for w.Status().Stale != want {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s: %+v", what, within, w.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	_, c := consultest.Start(t)
	w := New(c, Options{WaitTime: 10 * time.Second})
	runWatcher(t, w)

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
	a, c := consultest.StartWith(t, consulagent.Options{DataDir: t.TempDir()})
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 80, Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	// WaitTime far longer than the test: recovery must not depend on it.
	w := New(c, Options{WaitTime: 5 * time.Minute, BackoffMax: 500 * time.Millisecond})
	runWatcher(t, w)
	waitCatalog(t, w, "web", func(cat *ir.Catalog) bool { return cat.Services["web"] != nil })
	a.Stop()
	waitStale(t, w, true, 20*time.Second, "reported stale while Consul is down")
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	if err := a.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	waitStale(t, w, false, 20*time.Second, "current again after Consul came back")
	if w.Catalog().Services["web"] == nil {
		t.Fatalf("lost the service across the outage: %+v", w.Catalog().Services)
	}
}

// TestStalenessHungAgent stops the agent's process without killing it: it
// keeps its connections and answers nothing. The watcher must report the
// catalog stale once the silence outlasts a blocking query, and current
// again once the agent answers.
func TestStalenessHungAgent(t *testing.T) {
	a, c := consultest.Start(t)
	w := New(c, Options{WaitTime: time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	runWatcher(t, w)
	t.Cleanup(func() { _ = a.Resume() }) // before the watcher stops
	waitCatalog(t, w, "the first sync", func(*ir.Catalog) bool { return w.Status().Synced })
	if st := w.Status(); st.Stale {
		t.Fatalf("stale before the agent hung: %+v", st)
	}
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	waitStale(t, w, true, 15*time.Second, "a hung agent reported stale")
	st := w.Status()
	if st.Staleness < time.Second || !strings.Contains(st.LastError, "hung") {
		t.Errorf("stale status %+v: want the silence and a reason naming a hung agent", st)
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	waitStale(t, w, false, 20*time.Second, "current again after the agent resumed")
}
