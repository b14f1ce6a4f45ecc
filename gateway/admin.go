package gateway

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshwarden/meshwarden/internal/redact"
)

// adminHandler serves /healthz, /readyz, /metrics, /config_dump and,
// authenticated, /debug/pprof/.
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case g.drain.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !g.ready.Load():
			http.Error(w, "no complete configuration yet", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.cfg.Registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /debug/pprof/", g.profilesHandler())
	mux.Handle("GET /healthz/ready", g.readyForAppHandler())
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.configDump())
	})
	return mux
}

// ConfigDump is the /config_dump document: the accepted resources (as
// Envoy's protojson, secrets redacted), versions, the filters' module state
// and why the latest config is not serving, if it is not.
type ConfigDump struct {
	Ready     bool                                  `json:"ready"`
	Connected bool                                  `json:"xds_connected"`
	Versions  map[string]string                     `json:"versions"`
	Serving   map[string]string                     `json:"serving_versions,omitempty"`
	Pending   string                                `json:"pending,omitempty"`
	LastNack  *nackInfo                             `json:"last_nack,omitempty"`
	Filters   []filterStatus                        `json:"filters"`
	Chain     []string                              `json:"chain"`
	Resources map[string]map[string]json.RawMessage `json:"resources"`
}

func (g *Gateway) configDump() ConfigDump {
	res, versions := g.store.snapshot()
	d := ConfigDump{Ready: g.ready.Load(), Connected: g.xds.Connected(), Versions: versions,
		Filters: g.plugins.statuses(), Resources: map[string]map[string]json.RawMessage{}}
	sort.Slice(d.Filters, func(i, j int) bool { return d.Filters[i].Name < d.Filters[j].Name })
	g.store.mu.Lock()
	d.LastNack = g.store.lastNack
	g.store.mu.Unlock()
	if lb := g.lastBuild.Load(); lb != nil {
		d.Pending = *lb
	}
	if m := g.model.Load(); m != nil {
		d.Serving = m.versions
		d.Chain = m.listener.filterNames
	}
	for t, rs := range res {
		out := map[string]json.RawMessage{}
		for name, r := range rs {
			if t == "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret" {
				out[name] = json.RawMessage(`{"redacted":true}`)
				continue
			}
			b, err := protojson.Marshal(r)
			if err != nil {
				b, _ = json.Marshal(err.Error())
			}
			out[name] = redact.Token(b) // the dev-only collector token never shows in a dump
		}
		d.Resources[t] = out
	}
	return d
}
