package main

import (
	"fmt"
	"runtime"
	"time"

	"github.com/spf13/pflag"
)

// profileFlags set the sampling of Go's mutex and block profiles, which
// are empty unless a rate is set (the CPU, heap and goroutine profiles need
// nothing). The profiles are served on the admin port, authenticated: the
// plane's /debug/pprof/ needs operator:read, the gateway's the bearer token
// of --admin-token-file. Every long-running command has them (they come
// with the logging flags, see logFlags).
type profileFlags struct {
	mutexFraction int
	blockRate     time.Duration
}

func (p *profileFlags) register(fl *pflag.FlagSet) {
	fl.IntVar(&p.mutexFraction, "mutex-profile-fraction", 100, "sample 1 in N mutex contention events for /debug/pprof/mutex (0: off)")
	fl.DurationVar(&p.blockRate, "block-profile-rate", time.Millisecond, "sample about one blocking event per this much time blocked for /debug/pprof/block (0: off)")
}

// apply sets the process's profile rates (process-wide by nature: one
// long-running command per process).
func (p *profileFlags) apply() error {
	if p.mutexFraction < 0 || p.blockRate < 0 {
		return fmt.Errorf("--mutex-profile-fraction %d, --block-profile-rate %v: give 0 (off) or a positive value", p.mutexFraction, p.blockRate)
	}
	runtime.SetMutexProfileFraction(p.mutexFraction)
	rate := 0
	if p.blockRate > 0 {
		rate = int(max(p.blockRate.Nanoseconds(), 1))
	}
	runtime.SetBlockProfileRate(rate)
	return nil
}
