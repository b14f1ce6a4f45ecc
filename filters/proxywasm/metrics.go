package proxywasm

import (
	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
)

// MetricCounter is a host counter defined by DefineCounterMetric. Its zero
// value is a counter that records nothing.
type MetricCounter struct{ metric }

// MetricGauge is a host gauge defined by DefineGaugeMetric. Its zero value
// records nothing.
type MetricGauge struct{ metric }

// MetricHistogram is a host histogram defined by DefineHistogramMetric. Its
// zero value records nothing.
type MetricHistogram struct{ metric }

// metric is a metric id of the VM that defined it.
type metric struct {
	vm *VM
	id uint32
}

// ID returns the host's id of the metric.
func (m metric) ID() uint32 { return m.id }

func (m metric) increment(delta int64) {
	if m.vm != nil {
		m.vm.host().IncrementMetric(m.id, delta)
	}
}

func (m metric) record(value uint64) {
	if m.vm != nil {
		m.vm.host().RecordMetric(m.id, value)
	}
}

func (m metric) value() uint64 {
	if m.vm == nil {
		return 0
	}
	v, _ := m.vm.host().GetMetric(m.id)
	return v
}

func (vm *VM) defineMetric(mt abi.MetricType, name string) (metric, error) {
	id, st := vm.host().DefineMetric(mt, name)
	if err := st.Err(); err != nil {
		return metric{}, err
	}
	return metric{vm: vm, id: id}, nil
}

// DefineCounterMetric defines (or finds) the counter name. Define metrics
// once, in OnPluginStart, and keep the value. It panics if the host refuses,
// as the SDK does: a filter cannot run without its metrics; use
// DefineCounterMetricErr to handle the error.
func (vm *VM) DefineCounterMetric(name string) MetricCounter {
	m, err := vm.DefineCounterMetricErr(name)
	if err != nil {
		panic("proxywasm: define counter metric " + name + ": " + err.Error())
	}
	return m
}

// DefineCounterMetricErr is DefineCounterMetric returning the host's error.
func (vm *VM) DefineCounterMetricErr(name string) (MetricCounter, error) {
	id, err := vm.defineMetric(abi.MetricCounter, name)
	return MetricCounter{id}, err
}

// Increment adds offset to the counter.
func (m MetricCounter) Increment(offset uint64) {
	m.increment(int64(offset))
}

// Value returns the counter's current value.
func (m MetricCounter) Value() uint64 {
	return m.value()
}

// DefineGaugeMetric defines (or finds) the gauge name; see DefineCounterMetric.
func (vm *VM) DefineGaugeMetric(name string) MetricGauge {
	m, err := vm.DefineGaugeMetricErr(name)
	if err != nil {
		panic("proxywasm: define gauge metric " + name + ": " + err.Error())
	}
	return m
}

// DefineGaugeMetricErr is DefineGaugeMetric returning the host's error.
func (vm *VM) DefineGaugeMetricErr(name string) (MetricGauge, error) {
	id, err := vm.defineMetric(abi.MetricGauge, name)
	return MetricGauge{id}, err
}

// Add adds offset (which may be negative) to the gauge.
func (m MetricGauge) Add(offset int64) { m.increment(offset) }

// Record sets the gauge to value.
func (m MetricGauge) Record(value uint64) { m.record(value) }

// Value returns the gauge's current value.
func (m MetricGauge) Value() int64 {
	return int64(m.value())
}

// DefineHistogramMetric defines (or finds) the histogram name; see
// DefineCounterMetric.
func (vm *VM) DefineHistogramMetric(name string) MetricHistogram {
	m, err := vm.DefineHistogramMetricErr(name)
	if err != nil {
		panic("proxywasm: define histogram metric " + name + ": " + err.Error())
	}
	return m
}

// DefineHistogramMetricErr is DefineHistogramMetric returning the host's error.
func (vm *VM) DefineHistogramMetricErr(name string) (MetricHistogram, error) {
	id, err := vm.defineMetric(abi.MetricHistogram, name)
	return MetricHistogram{id}, err
}

// Record adds one observation of value to the histogram.
func (m MetricHistogram) Record(value uint64) { m.record(value) }

// Value returns the host's value for the histogram (host-defined; Envoy
// returns an error, the fake host the sum of observations).
func (m MetricHistogram) Value() uint64 {
	return m.value()
}
