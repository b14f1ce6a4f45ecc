package gateway

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

// TestProfilesNeedTheAdminToken: /debug/pprof/ on the admin port refuses
// anonymous and wrong-token callers, serves mutex, block and heap profiles
// (gzip'd protobuf) to the token holder, never cmdline, and is refused
// outright without a token file.
func TestProfilesNeedTheAdminToken(t *testing.T) {
	probe.SampleContention(t)
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-pprof", func(c *Config) { c.ProfileTokenFile = tokenFile })
	off := startGateway(t, plane, "gw-pprof-off", nil)
	call := func(base, path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, tc := range []struct {
		base, path, token string
		want              int
	}{
		{gw.admin, "/debug/pprof/mutex", "", 401},
		{gw.admin, "/debug/pprof/heap", "wrong", 401},
		{gw.admin, "/debug/pprof/cmdline", "s3cret-admin", 404},
		{off.admin, "/debug/pprof/mutex", "s3cret-admin", 403},
	} {
		if code, body := call(tc.base, tc.path, tc.token); code != tc.want || strings.Contains(string(body), "s3cret") {
			t.Errorf("GET %s (token %q): %d %.100q, want %d", tc.path, tc.token, code, body, tc.want)
		}
	}
	probe.ProfilesServed(t, func(path string) (int, []byte) { return call(gw.admin, path, "s3cret-admin") })
	code, body := call(gw.admin, "/debug/pprof/mutex?debug=1", "s3cret-admin")
	if code != 200 || !strings.Contains(string(body), "--- mutex:") {
		t.Errorf("mutex profile as text: %d %.200q", code, body)
	}
}
