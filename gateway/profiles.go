package gateway

import (
	"bytes"
	"crypto/subtle"
	"net/http"
	"os"
	"strings"

	"github.com/meshwarden/meshwarden/internal/pprofserve"
)

// profilesHandler serves Go's runtime profiles (CPU, heap, goroutines,
// mutex, block, allocs, threadcreate, execution trace) under /debug/pprof/
// on the admin port. The rest of the admin port is anonymous as Envoy's
// is; profiles are not (stack traces reveal code and load), so they need
// `Authorization: Bearer <token>` with the token in Config.ProfileTokenFile,
// re-read on every request so it can be rotated in place. Without a token
// file they are refused (403) with what to configure. cmdline and symbol
// are never served (the command line may name secrets' paths).
func (g *Gateway) profilesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.ProfileTokenFile == "" {
			http.Error(w, "profiles are off: start the gateway with --admin-token-file and send Authorization: Bearer <token>", http.StatusForbidden)
			return
		}
		want, err := os.ReadFile(g.cfg.ProfileTokenFile)
		want = bytes.TrimSpace(want)
		if err != nil || len(want) == 0 {
			g.log.Error("admin token file unreadable or empty: profiles refused", "file", g.cfg.ProfileTokenFile, "err", err)
			http.Error(w, "profiles unavailable: the gateway cannot read its admin token file", http.StatusServiceUnavailable)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshwarden-gateway-admin"`)
			http.Error(w, "profiles need Authorization: Bearer <the token in --admin-token-file>", http.StatusUnauthorized)
			return
		}
		pprofserve.Serve(w, r)
	})
}
