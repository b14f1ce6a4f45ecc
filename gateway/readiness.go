package gateway

import (
	"fmt"
	"net/http"
	"time"
)

// maxReadyWait bounds ?wait= on /healthz/ready.
const maxReadyWait = 5 * time.Minute

// appReady says whether an application may start sending through this
// gateway (Istio's hold-until-proxy-ready): a first complete configuration
// serves (listener, routes, clusters, endpoints, its SDS certificates), no
// fail-closed filter is unavailable (every one's module fetched, verified
// and started), and the gateway is not draining. If not, reason says why.
func (g *Gateway) appReady() (ok bool, reason string) {
	switch {
	case g.drain.Load():
		return false, "draining"
	case !g.ready.Load():
		var pending string
		if lb := g.lastBuild.Load(); lb != nil {
			pending = *lb
		}
		if pending == "" {
			pending = "nothing received from the plane yet"
		}
		return false, "no complete configuration yet: " + pending
	}
	if m := g.model.Load(); m != nil && m.listener != nil && m.listener.blocked != "" {
		return false, fmt.Sprintf("fail-closed filter %s is unavailable (see /config_dump filters)", m.listener.blocked)
	}
	return true, ""
}

// readyForAppHandler serves GET /healthz/ready[?wait=DURATION]: 200 "ready"
// once appReady holds, else 503 with the reason. With wait (at most 5m) the
// request is held until the gateway is ready or the wait ends, so an
// application's start-up can block on one request:
//
//	curl -sf 'http://127.0.0.1:19000/healthz/ready?wait=60s'
//
// /readyz stays the load balancers' probe: it turns ready as soon as a
// configuration serves (a blocked fail-closed filter answers 503 itself).
func (g *Gateway) readyForAppHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wait time.Duration
		if s := r.URL.Query().Get("wait"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 || d > maxReadyWait {
				http.Error(w, fmt.Sprintf("wait=%q: give a duration up to %s, e.g. wait=30s", s, maxReadyWait), http.StatusBadRequest)
				return
			}
			wait = d
		}
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			ok, reason := g.appReady()
			if ok {
				_, _ = w.Write([]byte("ready\n"))
				return
			}
			select {
			case <-tick.C:
				continue
			case <-deadline.C:
			case <-r.Context().Done():
			}
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
	})
}
