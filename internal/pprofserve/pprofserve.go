// Package pprofserve serves Go's runtime profiles under /debug/pprof/ for
// the admin ports of the control plane and the gateway, each behind its
// own authorisation.
package pprofserve

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// Serve answers a request under /debug/pprof/: the CPU profile, the
// execution trace, and the index with every named profile (heap,
// goroutine, mutex, block, allocs, threadcreate). cmdline and symbol are
// never served (the command line may name secrets' paths): 404. The
// caller authorises the request first.
func Serve(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "cmdline", "symbol":
		http.NotFound(w, r)
	default:
		pprof.Index(w, r)
	}
}
