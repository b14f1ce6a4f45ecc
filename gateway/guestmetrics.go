package gateway

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// guestCollector exports the metrics the wasm filters define themselves
// (proxy_define_metric: mw_audit_dropped_total, mw_trace_spans_total, …)
// at scrape time. As Envoy's Prometheus output does for a guest's custom
// stats ("wasmcustom." prefix removed), a series keeps the guest's own name,
// so one alert rule serves Envoy sidecars and gateways alike; the label
// plugin names the filter that defined it. Counters stay counters, gauges
// gauges, and a histogram (the host keeps count and sum) is a summary.
//
// A guest defines its metrics when it starts, so its series are at zero
// from the moment its filter is loaded, before any request.
type guestCollector struct{ g *Gateway }

// guestMetricHelp is the help text of every guest series.
const guestMetricHelp = "Defined by a wasm filter (proxy_define_metric); see the filter's README."

// Describe implements prometheus.Collector. The set of series depends on
// the filters loaded, so the collector is unchecked (it describes nothing).
func (c *guestCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *guestCollector) Collect(ch chan<- prometheus.Metric) {
	if c.g.rt == nil { // New failed before the runtime existed
		return
	}
	seen := map[string]bool{}
	for _, m := range c.g.rt.GuestMetrics() {
		name := promName(m.Name)
		if seen[name] || reservedPrefix(name) {
			continue // one series per name; the gateway's own names stay its own
		}
		seen[name] = true
		desc := prometheus.NewDesc(name, guestMetricHelp, []string{"plugin"}, nil)
		switch m.Kind {
		case "counter":
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(m.Value), m.Plugin)
		case "gauge":
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(m.Value), m.Plugin)
		default:
			ch <- prometheus.MustNewConstSummary(desc, m.Count, float64(m.Sum), nil, m.Plugin)
		}
	}
}

// promName maps a guest's metric name onto Prometheus's alphabet: Envoy
// style dots and any other character outside [a-zA-Z0-9_:] become '_', and
// a leading digit gets a '_' in front.
func promName(name string) string {
	var b strings.Builder
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_', r == ':':
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// reservedPrefix reports whether name belongs to the gateway or the Go
// runtime collectors, which a guest must not shadow (a clash would make
// the whole scrape fail).
func reservedPrefix(name string) bool {
	for _, p := range []string{"meshwarden_", "go_", "process_", "promhttp_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
