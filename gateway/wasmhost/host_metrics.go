package wasmhost

import "github.com/tetratelabs/wazero/api"

// metricFuncs are the guest metric hostcalls (host-wide).
var metricFuncs = []hostFunc{
	{"proxy_define_metric", i32s(4), proxyDefineMetric},
	{"proxy_increment_metric", []api.ValueType{i32, i64}, proxyIncrementMetric},
	{"proxy_record_metric", []api.ValueType{i32, i64}, proxyRecordMetric},
	{"proxy_get_metric", i32s(2), proxyGetMetric},
}

// proxyDefineMetric(type, name, name_size, id_ptr) defines (or finds) a
// metric by name.
func proxyDefineMetric(in *instance, args []uint64) status {
	name, ok := in.readArg(args, 1)
	if !ok {
		return statusInvalidMemoryAccess
	}
	if !in.writable(args, 3, 4) {
		return statusInvalidMemoryAccess
	}
	id, st := in.p.r.metrics.define(metricType(arg(args, 0)), string(name), in.p.cfg.Name)
	if st != statusOK {
		return st
	}
	return in.putU32(arg(args, 3), id)
}

// proxyIncrementMetric(id, i64 offset) adds to a counter or gauge.
func proxyIncrementMetric(in *instance, args []uint64) status {
	return in.p.r.metrics.increment(arg(args, 0), int64(args[1]))
}

// proxyRecordMetric(id, u64 value) sets a gauge or records a histogram value.
func proxyRecordMetric(in *instance, args []uint64) status {
	return in.p.r.metrics.record(arg(args, 0), args[1])
}

// proxyGetMetric(id, value_ptr) writes a metric's value.
func proxyGetMetric(in *instance, args []uint64) status {
	if !in.writable(args, 1, 8) {
		return statusInvalidMemoryAccess
	}
	v, st := in.p.r.metrics.get(arg(args, 0))
	if st != statusOK {
		return st
	}
	return in.putU64(arg(args, 1), v)
}
