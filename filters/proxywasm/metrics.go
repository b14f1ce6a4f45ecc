package proxywasm

import (
	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
)

// MetricCounter is a host counter defined by DefineCounterMetric.
type MetricCounter uint32

// MetricGauge is a host gauge defined by DefineGaugeMetric.
type MetricGauge uint32

// MetricHistogram is a host histogram defined by DefineHistogramMetric.
type MetricHistogram uint32

func defineMetric(mt abi.MetricType, name string) (uint32, error) {
	id, st := host().DefineMetric(mt, name)
	return id, st.Err()
}

// DefineCounterMetric defines (or finds) the counter name. Define metrics
// once, in OnPluginStart, and keep the value. It panics if the host refuses,
// as the SDK does: a filter cannot run without its metrics; use
// DefineCounterMetricErr to handle the error.
func DefineCounterMetric(name string) MetricCounter {
	m, err := DefineCounterMetricErr(name)
	if err != nil {
		panic("proxywasm: define counter metric " + name + ": " + err.Error())
	}
	return m
}

// DefineCounterMetricErr is DefineCounterMetric returning the host's error.
func DefineCounterMetricErr(name string) (MetricCounter, error) {
	id, err := defineMetric(abi.MetricCounter, name)
	return MetricCounter(id), err
}

// Increment adds offset to the counter.
func (m MetricCounter) Increment(offset uint64) {
	host().IncrementMetric(uint32(m), int64(offset))
}

// Value returns the counter's current value.
func (m MetricCounter) Value() uint64 {
	v, _ := host().GetMetric(uint32(m))
	return v
}

// DefineGaugeMetric defines (or finds) the gauge name; see DefineCounterMetric.
func DefineGaugeMetric(name string) MetricGauge {
	m, err := DefineGaugeMetricErr(name)
	if err != nil {
		panic("proxywasm: define gauge metric " + name + ": " + err.Error())
	}
	return m
}

// DefineGaugeMetricErr is DefineGaugeMetric returning the host's error.
func DefineGaugeMetricErr(name string) (MetricGauge, error) {
	id, err := defineMetric(abi.MetricGauge, name)
	return MetricGauge(id), err
}

// Add adds offset (which may be negative) to the gauge.
func (m MetricGauge) Add(offset int64) { host().IncrementMetric(uint32(m), offset) }

// Record sets the gauge to value.
func (m MetricGauge) Record(value uint64) { host().RecordMetric(uint32(m), value) }

// Value returns the gauge's current value.
func (m MetricGauge) Value() int64 {
	v, _ := host().GetMetric(uint32(m))
	return int64(v)
}

// DefineHistogramMetric defines (or finds) the histogram name; see
// DefineCounterMetric.
func DefineHistogramMetric(name string) MetricHistogram {
	m, err := DefineHistogramMetricErr(name)
	if err != nil {
		panic("proxywasm: define histogram metric " + name + ": " + err.Error())
	}
	return m
}

// DefineHistogramMetricErr is DefineHistogramMetric returning the host's error.
func DefineHistogramMetricErr(name string) (MetricHistogram, error) {
	id, err := defineMetric(abi.MetricHistogram, name)
	return MetricHistogram(id), err
}

// Record adds one observation of value to the histogram.
func (m MetricHistogram) Record(value uint64) { host().RecordMetric(uint32(m), value) }

// Value returns the host's value for the histogram (host-defined; Envoy
// returns an error, the fake host the sum of observations).
func (m MetricHistogram) Value() uint64 {
	v, _ := host().GetMetric(uint32(m))
	return v
}
