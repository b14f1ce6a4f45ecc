package pprofserve

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestServe: named profiles and the index are served, cmdline and symbol
// never are.
func TestServe(t *testing.T) {
	for _, tc := range []struct {
		path string
		code int
		has  string
	}{
		{"/debug/pprof/", http.StatusOK, "goroutine"},
		{"/debug/pprof/heap?debug=1", http.StatusOK, "heap profile"},
		{"/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile"},
		{"/debug/pprof/cmdline", http.StatusNotFound, "404 page not found"},
		{"/debug/pprof/symbol", http.StatusNotFound, "404 page not found"},
	} {
		rec := httptest.NewRecorder()
		Serve(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.has) {
			t.Errorf("GET %s: %d %.80q, want %d with %q", tc.path, rec.Code, rec.Body.String(), tc.code, tc.has)
		}
	}
}
