package wasmhost

import "time"

// timeFuncs are the clock and timer hostcalls.
var timeFuncs = []hostFunc{
	{"proxy_get_current_time_nanoseconds", i32s(1), proxyGetCurrentTime},
	{"proxy_set_tick_period_milliseconds", i32s(1), proxySetTickPeriod},
}

// proxyGetCurrentTime(time_ptr) writes the wall clock in Unix nanoseconds.
func proxyGetCurrentTime(in *instance, args []uint64) status {
	return in.putU64(arg(args, 0), uint64(time.Now().UnixNano()))
}

// proxySetTickPeriod(period_ms) sets (or, with 0, stops) the root context's
// proxy_on_tick period; the plugin's background loop delivers the ticks.
func proxySetTickPeriod(in *instance, args []uint64) status {
	d := time.Duration(arg(args, 0)) * time.Millisecond
	in.tickPeriod.Store(int64(d))
	if d > 0 {
		in.nextTick.Store(int64(time.Since(in.p.epoch) + d))
		in.p.kick()
	}
	return statusOK
}
