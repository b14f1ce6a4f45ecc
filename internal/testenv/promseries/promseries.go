// Package promseries reads series out of a Prometheus registry for tests:
// the family of a name, the samples whose labels match, their values.
package promseries

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Family gathers g and returns the family name, or nil when g has no
// sample of it. A failing Gather fails tb.
func Family(tb testing.TB, g prometheus.Gatherer, name string) *dto.MetricFamily {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// Sum adds the values of name's samples that carry every label of labels
// (all of them when labels is empty).
func Sum(tb testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	var sum float64
	for _, m := range Family(tb, g, name).GetMetric() {
		if Match(m, labels) {
			sum += Value(m)
		}
	}
	return sum
}

// Match reports whether m carries every label of labels with its value.
func Match(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		if got, ok := Label(m, k); !ok || got != v {
			return false
		}
	}
	return true
}

// Label returns m's value of the label name, and whether m has it.
func Label(m *dto.Metric, name string) (string, bool) {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue(), true
		}
	}
	return "", false
}

// Value is a counter's or a gauge's value (0 for other types).
func Value(m *dto.Metric) float64 {
	return m.GetCounter().GetValue() + m.GetGauge().GetValue()
}
