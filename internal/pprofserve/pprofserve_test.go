package pprofserve

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// get serves GET path and returns the status and body.
func get(path string) (int, string) {
	rec := httptest.NewRecorder()
	Serve(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestServe: the index and the named profiles are served, cmdline and
// symbol never are (404, not pprof's "Unknown profile").
func TestServe(t *testing.T) {
	served := map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
	}
	for path, has := range served {
		if code, body := get(path); code != http.StatusOK || !strings.Contains(body, has) {
			t.Errorf("GET %s: %d %.80q, want 200 with %q", path, code, body, has)
		}
	}
	for _, name := range []string{"cmdline", "symbol"} {
		if code, body := get("/debug/pprof/" + name); code != http.StatusNotFound || body != "404 page not found\n" {
			t.Errorf("GET /debug/pprof/%s: %d %.80q, want 404 page not found", name, code, body)
		}
	}
}
