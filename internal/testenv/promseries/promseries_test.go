package promseries

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSumAndFamily: Sum adds the counter and gauge samples whose labels
// match, Family is nil for a name without samples, Label tells a missing
// label from an empty one.
func TestSumAndFamily(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"decision", "route"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "h"})
	reg.MustRegister(c, g)
	c.WithLabelValues("allow", "a").Add(2)
	c.WithLabelValues("allow", "b").Add(3)
	c.WithLabelValues("deny", "a").Add(5)
	g.Set(7)
	want := func(name string, labels map[string]string, v float64) {
		t.Helper()
		if got := Sum(t, reg, name, labels); got != v {
			t.Errorf("Sum(%s, %v) = %v, want %v", name, labels, got, v)
		}
	}
	want("c_total", nil, 10)
	want("c_total", map[string]string{"decision": "allow"}, 5)
	want("c_total", map[string]string{"decision": "deny", "route": "a"}, 5)
	want("c_total", map[string]string{"decision": "none"}, 0)
	want("g", nil, 7)
	want("absent", nil, 0)
	if f := Family(t, reg, "absent"); f != nil {
		t.Errorf("Family(absent) = %v, want nil", f)
	}
	m := Family(t, reg, "g").GetMetric()[0]
	if v, ok := Label(m, "decision"); ok || v != "" {
		t.Errorf("Label(g, decision) = %q, %v; want none", v, ok)
	}
}
