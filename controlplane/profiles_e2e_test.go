package controlplane_test

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

// TestProfilesBehindAdminAuth: the plane's /debug/pprof/ on the admin API
// needs a token with operator:read (none: 401; a proxy's token: 403) and
// then serves the mutex and block profiles (sampled at the rates the CLI's
// --mutex-profile-fraction and --block-profile-rate set) and the heap.
func TestProfilesBehindAdminAuth(t *testing.T) {
	probe.SampleContention(t)
	p := startSecurePlane(t)
	get := func(token, path string) (int, []byte) {
		t.Helper()
		var hc *http.Client
		if token == "" {
			cfg, err := auth.PlaneTLS(p.caFile)
			if err != nil {
				t.Fatal(err)
			}
			hc = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
		} else {
			var err error
			if hc, err = (auth.ClientOptions{CAFile: p.caFile, Token: token}).HTTPClient(); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := hc.Get(p.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get("", "/debug/pprof/mutex"); code != 401 {
		t.Errorf("anonymous: %d, want 401", code)
	}
	if code, _ := get(p.tokens["gateway"], "/debug/pprof/block"); code != 403 {
		t.Errorf("a gateway's token: %d, want 403", code)
	}
	probe.ProfilesServed(t, func(path string) (int, []byte) { return get(p.tokens["operator"], path) })
	// The plane's build (meshwarden version --plane) is in its status,
	// for operator:read only.
	if code, _ := get("", "/v1/status"); code != 401 {
		t.Errorf("anonymous status: %d, want 401", code)
	}
	code, body := get(p.tokens["operator"], "/v1/status")
	var st struct {
		Build struct {
			Version   string `json:"version"`
			GoVersion string `json:"go_version"`
		} `json:"build"`
	}
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || st.Build.Version == "" || st.Build.GoVersion != runtime.Version() {
		t.Errorf("status build: %d %+v %v: want the plane's version and %s", code, st.Build, err, runtime.Version())
	}
	if code, body := get(p.tokens["operator"], "/debug/pprof/block?debug=1"); code != 200 || !strings.Contains(string(body), "--- contention:") {
		t.Errorf("block profile as text: %d %.200q", code, body)
	}
}
