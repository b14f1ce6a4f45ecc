package gateway

import (
	"testing"
	"time"
)

func testCluster(lb lbKind, outlier *outlierSpec, addrs ...string) *clusterRT {
	live := &clusterLive{eps: map[string]*epState{}, connFreed: make(chan struct{}, 1)}
	c := &clusterRT{spec: &clusterSpec{name: "c", lb: lb, outlier: outlier, minRetryConc: 2, budgetPercent: -1}, live: live}
	for _, a := range addrs {
		c.endpoints = append(c.endpoints, endpointRef{st: live.endpoint(a), healthy: true})
		c.healthyN++
	}
	return c
}

func TestLoadBalancing(t *testing.T) {
	now := time.Now()
	t.Run("round robin visits every endpoint evenly", func(t *testing.T) {
		c := testCluster(lbRoundRobin, nil, "a:1", "b:1", "c:1")
		counts := map[string]int{}
		for range 300 {
			counts[c.pick(now.UnixNano(), nil).addr]++
		}
		for _, a := range []string{"a:1", "b:1", "c:1"} {
			if counts[a] != 100 {
				t.Fatalf("counts %v, want 100 each", counts)
			}
		}
	})
	t.Run("least request avoids the busy endpoint", func(t *testing.T) {
		c := testCluster(lbLeastRequest, nil, "busy:1", "idle:1")
		c.endpoints[0].st.active.Store(10)
		busy := 0
		for range 1000 {
			if c.pick(now.UnixNano(), nil).addr == "busy:1" {
				busy++
			}
		}
		// Power of two choices picks busy only when both draws hit it (≈ 1/4
		// per draw pair when it cannot find a second distinct endpoint).
		if busy > 300 {
			t.Fatalf("busy endpoint chosen %d/1000 times", busy)
		}
	})
	t.Run("retry avoids the endpoint already tried", func(t *testing.T) {
		c := testCluster(lbRoundRobin, nil, "a:1", "b:1")
		first := c.pick(now.UnixNano(), nil)
		for range 10 {
			if c.pick(now.UnixNano(), []*epState{first}) == first {
				t.Fatal("retry picked the endpoint that just failed")
			}
		}
	})
	t.Run("unhealthy endpoints are never picked; none healthy is nil", func(t *testing.T) {
		c := testCluster(lbRoundRobin, nil, "a:1", "b:1")
		c.endpoints[0].healthy = false
		c.healthyN = 1
		for range 10 {
			if c.pick(now.UnixNano(), nil).addr != "b:1" {
				t.Fatal("picked an unhealthy endpoint")
			}
		}
		c.endpoints[1].healthy = false
		c.healthyN = 0
		if c.pick(now.UnixNano(), nil) != nil {
			t.Fatal("picked with no healthy endpoint")
		}
	})
	t.Run("outlier ejection after consecutive 5xx, bounded by max percent", func(t *testing.T) {
		o := &outlierSpec{consecutive5xx: 3, baseEjection: time.Minute, maxEjection: 5 * time.Minute, maxPercent: 10}
		c := testCluster(lbRoundRobin, o, "a:1", "b:1", "c:1")
		a, b := c.endpoints[0].st, c.endpoints[1].st
		c.observe(a, 500, nil, now)
		c.observe(a, 200, nil, now) // a success resets the count
		c.observe(a, 500, nil, now)
		if c.observe(a, 503, nil, now) {
			t.Fatal("ejected after 2 consecutive 5xx")
		}
		if !c.observe(a, 502, nil, now) {
			t.Fatal("not ejected after 3 consecutive 5xx")
		}
		for range 20 {
			if c.pick(now.UnixNano(), nil) == a {
				t.Fatal("picked an ejected endpoint")
			}
		}
		for range 3 {
			c.observe(b, 500, nil, now)
		}
		if b.ejectedUntil.Load() > now.UnixNano() {
			t.Fatal("ejected a second endpoint beyond max_ejection_percent (10% of 3 allows 1)")
		}
		if c.pick(now.Add(2*time.Minute).UnixNano(), []*epState{b, c.endpoints[2].st}) != a {
			t.Fatal("endpoint not back after its ejection time")
		}
	})
	t.Run("retry budget", func(t *testing.T) {
		c := testCluster(lbRoundRobin, nil, "a:1")
		if !c.retryAllowed() || !c.retryAllowed() {
			t.Fatal("min retry concurrency 2 refused")
		}
		if c.retryAllowed() {
			t.Fatal("third concurrent retry allowed beyond the budget")
		}
	})
}
