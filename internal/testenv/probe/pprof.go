package probe

import (
	"runtime"
	"testing"
)

// SampleContention turns on mutex and block profiling for the rest of the
// test (the rates the CLIs' --mutex-profile-fraction and --block-profile-rate
// set), so a /debug/pprof/ endpoint has contention to serve, and restores
// the previous rates when the test ends.
func SampleContention(tb testing.TB) {
	prev := runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(1)
	tb.Cleanup(func() {
		runtime.SetMutexProfileFraction(prev)
		runtime.SetBlockProfileRate(0)
	})
}

// ProfilesServed checks that get (a GET on a /debug/pprof/ endpoint with
// the right credentials, returning status and body) serves the mutex, block
// and heap profiles as gzip'd protobuf; each miss is an error on tb.
func ProfilesServed(tb testing.TB, get func(path string) (int, []byte)) {
	tb.Helper()
	for _, p := range []string{"/debug/pprof/mutex", "/debug/pprof/block", "/debug/pprof/heap"} {
		code, body := get(p)
		if code != 200 || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
			tb.Errorf("GET %s with the credentials: %d, %d bytes, want 200 and a gzip'd profile", p, code, len(body))
		}
	}
}
