package controlplane

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/buildinfo"
	"github.com/meshwarden/meshwarden/internal/pprofserve"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/controlplane/intentions"
	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
)

// maxPolicyBody bounds POST /v1/policies:* bodies.
const maxPolicyBody = 8 << 20

// Status is GET /v1/status.
type Status struct {
	// Build is the plane binary's version, commit and Go toolchain.
	Build          buildinfo.Info     `json:"build"`
	Consul         consulwatch.Status `json:"consul"`
	PolicyRevision string             `json:"policy_revision"`
	Nodes          int                `json:"nodes"`
	LastBuild      time.Time          `json:"last_build"`
	BuildError     string             `json:"build_error,omitempty"`
	LastRejection  *Rejection         `json:"last_rejection,omitempty"`
	// AwaitingPolicies: no valid set from the policy directory or the
	// store yet, so no proxy has been sent any configuration.
	AwaitingPolicies bool `json:"awaiting_policies,omitempty"`
	// PolicyStore is the replicated store's state (nil without one).
	PolicyStore *StoreStatus `json:"policy_store,omitempty"`
	// Replica names this replica.
	Replica string `json:"replica,omitempty"`
	// Intentions is the Consul intentions source (absent when not
	// watched): its index, last success, staleness and translation notes.
	Intentions *intentions.Status `json:"intentions,omitempty"`
	// Health is the subset health scores (absent when scoring is off).
	Health *health.Status `json:"health,omitempty"`
}

// NodeStatus is one entry of GET /v1/nodes.
type NodeStatus struct {
	xdsnode.Info
	Streams     int    `json:"streams"`
	Version     string `json:"version,omitempty"`
	GoodVersion string `json:"good_version,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Status returns the plane's status.
func (s *Server) Status() Status {
	st := Status{Build: buildinfo.Get(), Consul: s.watcher.Status()}
	if hs, ok := s.Health(); ok {
		st.Health = &hs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Intentions != nil {
		is := s.cfg.Intentions.Status()
		// Which services' intentions an AccessPolicy set aside.
		_, notes := intentions.Merge(s.policy, s.cfg.Intentions.Policies())
		is.Warnings = append(is.Warnings, notes...)
		st.Intentions = &is
	}
	if s.policy != nil {
		st.PolicyRevision = s.policy.Revision
	}
	st.AwaitingPolicies = s.awaitPolicies
	st.PolicyStore = s.storeStatusLocked()
	st.Replica = s.cfg.Replica
	st.Nodes = len(s.nodes)
	st.LastBuild = s.built
	if s.buildErr != nil {
		st.BuildError = s.buildErr.Error()
	}
	if s.rejection != nil {
		r := *s.rejection
		st.LastRejection = &r
	}
	return st
}

// Nodes lists connected nodes, sorted by id.
func (s *Server) Nodes() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeStatus, 0, len(s.nodes))
	for _, id := range slices.Sorted(maps.Keys(s.nodes)) {
		ns := s.nodes[id]
		n := NodeStatus{Info: ns.info, Streams: ns.streams}
		if ns.current != nil {
			n.Version = ns.current.GetVersion(anyType)
		}
		if ns.good != nil {
			n.GoodVersion = ns.good.GetVersion(anyType)
		}
		if ns.err != nil {
			n.Error = ns.err.Error()
		}
		out = append(out, n)
	}
	return out
}

// ConfigDump returns node id's current resources as YAML.
func (s *Server) ConfigDump(id string) ([]byte, error) {
	s.mu.Lock()
	ns := s.nodes[id]
	var snap *translate.Snapshot
	if ns != nil {
		snap = ns.snap
	}
	s.mu.Unlock()
	if ns == nil {
		return nil, errors.New("no node " + id + " is connected: GET /v1/nodes lists them")
	}
	if snap == nil {
		return nil, errors.New("node " + id + " has no snapshot yet")
	}
	return snap.YAML()
}

// AdminHandler serves the authenticated admin API: /v1/* and /metrics
// (unless metricsPublic), plus /healthz and /readyz. Every /v1 call needs
// a Consul ACL token (X-Consul-Token or Authorization: Bearer) with:
//
//	operator:read   GET /v1/status, GET /v1/nodes, GET /v1/health, GET /metrics
//	mesh:read       GET /v1/config_dump, POST /v1/policies:translate
//	mesh:write      POST /v1/policies:apply
//	operator:read   GET /v1/rollouts
//	mesh:write      POST /v1/rollouts/{name}/promote, .../abort
//
// The change log records the token's accessor id and description. Serve it
// over TLS (cmd/meshwarden does, with the plane's mesh certificate).
func (s *Server) AdminHandler(metricsPublic bool) http.Handler {
	mux := http.NewServeMux()
	s.probes(mux)
	metrics := promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
	if metricsPublic {
		mux.Handle("GET /metrics", metrics)
	} else {
		mux.HandleFunc("GET /metrics", s.require(auth.OperatorRead, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
			metrics.ServeHTTP(w, r)
		}))
	}
	// Runtime profiles (CPU, heap, goroutines, mutex, block) for whoever
	// may read the plane's status: stack traces and sizes, no data.
	mux.HandleFunc("GET /debug/pprof/", s.require(auth.OperatorRead, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		pprofserve.Serve(w, r)
	}))
	mux.HandleFunc("GET /v1/status", s.require(auth.OperatorRead, func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		writeJSON(w, http.StatusOK, s.Status())
	}))
	mux.HandleFunc("GET /v1/health", s.require(auth.OperatorRead, func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		hs, ok := s.Health()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "health scoring is off: start the plane with --health-scrape URL (a proxy's /metrics)"})
			return
		}
		writeJSON(w, http.StatusOK, hs)
	}))
	mux.HandleFunc("GET /v1/nodes", s.require(auth.OperatorRead, func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		writeJSON(w, http.StatusOK, s.Nodes())
	}))
	mux.HandleFunc("GET /v1/config_dump", s.require(auth.MeshRead, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		id := r.URL.Query().Get("node")
		if id == "" {
			http.Error(w, "give ?node=ID (GET /v1/nodes lists them)", http.StatusBadRequest)
			return
		}
		b, err := s.ConfigDump(id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(b)
	}))
	mux.HandleFunc("POST /v1/policies:translate", s.require(auth.MeshRead, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		files, ok := readFiles(w, r)
		if !ok {
			return
		}
		snaps, warnings, err := s.TranslatePolicies(files)
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error()})
			return
		}
		nodes := map[string]any{}
		for id, snap := range snaps {
			d, err := snap.Dump()
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
				return
			}
			nodes[id] = d
		}
		writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes, "warnings": warnings})
	}))
	mux.HandleFunc("POST /v1/policies:apply", s.require(auth.MeshWrite, func(w http.ResponseWriter, r *http.Request, who auth.Principal) {
		files, ok := readFiles(w, r)
		if !ok {
			return
		}
		ifRev := strings.Trim(r.Header.Get("If-Match"), `"`)
		ps, warnings, err := s.ApplyPoliciesIf(r.Context(), files, "api", who.String(), ifRev)
		var conflict *policystore.ConflictError
		switch {
		case errors.As(err, &conflict):
			body := map[string]any{"error": err.Error(), "applied": false}
			if conflict.Current != nil {
				body["current_revision"] = conflict.Current.Revision
			}
			writeJSON(w, http.StatusConflict, body)
			return
		case errors.Is(err, policystore.ErrUnavailable):
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error() + "; nothing was applied, retry when Consul answers", "applied": false})
			return
		case err != nil:
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "applied": false})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"applied": true, "revision": ps.Revision, "warnings": warnings, "applied_by": who.String()})
	}))
	s.rolloutRoutes(mux)
	return mux
}

// PublicHandler serves what is anonymous by design: the health probes
// /healthz and /readyz, /metrics when metricsPublic, and, if modules is
// non-nil, the filter modules at /modules/ — public, content-addressed
// artefacts that every proxy checks against the sha256 pinned in its
// authenticated xDS configuration before loading.
func (s *Server) PublicHandler(modules http.Handler, metricsPublic bool) http.Handler {
	mux := http.NewServeMux()
	s.probes(mux)
	if metricsPublic {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	}
	if modules != nil {
		mux.Handle("/modules/", modules)
	}
	return mux
}

func (s *Server) probes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.Status()
		if !st.Consul.Synced {
			http.Error(w, "not ready: the Consul catalog has not been read yet", http.StatusServiceUnavailable)
			return
		}
		if st.AwaitingPolicies {
			msg := "not ready: no valid policy set from " + s.cfg.PolicyDir + " yet; proxies get no configuration until one is applied"
			if r := st.LastRejection; r != nil {
				msg += "; last rejection: " + r.Error + " (check the files with: meshwarden policy validate " + s.cfg.PolicyDir + ")"
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
}

type snapshotRef struct {
	s interface{ YAML() ([]byte, error) }
}

// readFiles decodes the body {filename: content}.
func readFiles(w http.ResponseWriter, r *http.Request) (map[string][]byte, bool) {
	var body map[string]string
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPolicyBody))
	if err := dec.Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be a JSON object {\"file.yaml\": \"content\", ...}: " + err.Error()})
		return nil, false
	}
	if len(body) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "no files in the body: send {\"file.yaml\": \"content\", ...}"})
		return nil, false
	}
	files := make(map[string][]byte, len(body))
	for n, c := range body {
		files[n] = []byte(c)
	}
	return files, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
