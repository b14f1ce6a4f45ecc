package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
)

// planeStatus is the part of the plane's /v1/status the tests read.
type planeStatus struct {
	PolicyRevision string `json:"policy_revision"`
	Consul         struct {
		Stale  bool `json:"stale"`
		Synced bool `json:"synced"`
	} `json:"consul"`
	LastRejection *struct {
		Kind  string `json:"kind"`
		Error string `json:"error"`
	} `json:"last_rejection"`
}

func getStatus(t *testing.T, st *demo.Stack) planeStatus {
	t.Helper()
	var s planeStatus
	hc, err := st.AdminClient(st.OperatorTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(st.AdminURL("/v1/status"))
	if err != nil {
		t.Fatalf("plane status: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("plane status: %v", err)
	}
	return s
}

// eventually polls cond every 100ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not happen within %s; last: %s", what, d, last)
}

// dumpFilter is one filter in the gateway's config_dump.
type dumpFilter struct {
	Name       string `json:"name"`
	SHA256     string `json:"sha256"`
	State      string `json:"state"`
	LastError  string `json:"last_error"`
	RunningSHA string `json:"running_sha256"`
}

// gatewayFilter returns the filter called name in the gateway's
// config_dump (nil when the dump failed or lacks it) and what was seen.
func gatewayFilter(st *demo.Stack, name string) (*dumpFilter, string) {
	var d struct {
		Filters []dumpFilter `json:"filters"`
	}
	resp, err := http.Get("http://" + st.GatewayAdmin + "/config_dump")
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, err.Error()
	}
	for _, f := range d.Filters {
		if f.Name == name {
			return &f, fmt.Sprintf("%+v", f)
		}
	}
	return nil, fmt.Sprintf("no %s in %+v", name, d.Filters)
}

// laneTarget returns the version that opt-in canary requests reach.
func laneTarget(ctx context.Context, c *demo.Client) (string, error) {
	r, err := c.Do(ctx, http.MethodGet, "/probe", map[string]string{"x-canary": "true"}, nil)
	if err != nil {
		return "", err
	}
	if r.Status != 200 {
		return "", fmt.Errorf("status %d: %.200s", r.Status, r.Body)
	}
	return r.Echo.Version, nil
}

// flipCanary rewrites the canary route so the canary lane goes to subset to.
func flipCanary(t *testing.T, st *demo.Stack, to string) {
	t.Helper()
	p := filepath.Join(st.PolicyDir, "canary-payments.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "- lane: canary")
	j := strings.Index(s[i:], "subset: ")
	k := strings.Index(s[i+j:], "\n")
	s = s[:i+j] + "subset: " + to + s[i+j+k:]
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func getLoad(c *demo.Client, rps int) *loader {
	return startLoader(c, http.MethodGet, "/load", rps, func(string) map[string]string { return map[string]string{"x-canary": "true"} }, nil)
}

func transferLoad(c *demo.Client, rps int) *loader {
	return startLoader(c, http.MethodPost, "/v1/transfers", rps,
		func(id string) map[string]string { return map[string]string{"x-request-id": id, "x-mw-subject": "e2e"} },
		func(id string) []byte { return []byte(`{"from":"a","to":"b","amount":1,"ref":"` + id + `"}`) })
}

// auditedRequestIDs returns the x-request-id of every FUND_TRANSFER intent
// record in the collector's WAL.
func auditedRequestIDs(t *testing.T, st *demo.Stack) map[string]bool {
	t.Helper()
	out, err := exec.Command(testEnv.binary, "audit", "query", "--dir", st.AuditDir, "--op-type", "FUND_TRANSFER").CombinedOutput()
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		var ev struct {
			Phase   string            `json:"phase"`
			Headers map[string]string `json:"headers"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Phase == "intent" && ev.Headers["x-request-id"] != "" {
			ids[ev.Headers["x-request-id"]] = true
		}
	}
	return ids
}

// verifyAudit runs `audit verify`, which fails closed on records no
// signed checkpoint covers yet: the collector signs every second here, so
// the newest records are waited for (bounded), never excused.
func verifyAudit(t *testing.T, st *demo.Stack) {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; {
		out, err = exec.Command(testEnv.binary, "audit", "verify", "--dir", st.AuditDir, "--pubkey", st.AuditPubKey).CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("audit verify failed: %v\n%s", err, out)
	}
}

// TestFaults runs the bad days on one stack, in order; each step leaves
// the stack healthy for the next.
func TestFaults(t *testing.T) {
	st := startStack(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := st.NewClient()
	requireLane(ctx, t, c, "v2", "canary lane before faults")
	for _, step := range []struct {
		name string
		run  func(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client)
	}{
		{"plane killed: gateway keeps serving, then resyncs", faultPlaneKilled},
		{"bad policy: rejected whole, traffic unaffected", faultBadPolicy},
		{"broken filter release: last good keeps running", faultBrokenRelease},
		{"consul stopped and restarted: last snapshot serves", faultConsulRestarted},
		{"collector killed under load: fail-closed, no acknowledged record lost", faultCollectorKilled},
		{"gateway killed under load: no acknowledged audit record lost", faultGatewayKilled},
	} {
		t.Run(step.name, func(t *testing.T) { step.run(ctx, t, st, c) })
	}
}

// faultPlaneKilled: plane killed: gateway keeps serving, then resyncs.
func faultPlaneKilled(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client) {
	l := getLoad(c, 50)
	time.Sleep(500 * time.Millisecond)
	st.Plane.Kill()
	time.Sleep(2 * time.Second)
	l.stop()
	if l.failed.Load() != 0 || l.ok.Load() < 50 {
		t.Fatalf("while the plane was down: %s", l)
	}
	// Change policy while the plane is down; it must apply once the
	// plane is back and the gateway has resynced.
	flipCanary(t, st, "v1")
	if err := st.StartPlane(ctx); err != nil {
		t.Fatal(err)
	}
	awaitLane(ctx, t, c, "v1", "gateway resync after plane restart")
	flipCanary(t, st, "v2")
	awaitLane(ctx, t, c, "v2", "canary route restored")
}

// faultBadPolicy: bad policy: rejected whole, traffic unaffected.
func faultBadPolicy(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client) {
	before := getStatus(t, st).PolicyRevision
	bad := filepath.Join(st.PolicyDir, "zz-bad.yaml")
	t.Cleanup(func() { os.Remove(bad) })
	err := os.WriteFile(bad, []byte("apiVersion: meshwarden.io/v1alpha1\nkind: CanaryRoute\nmetadata:\n  name: broken\nspec:\n  service: payments\n  subsets:\n    - name: v3\n      selector: {version: v3}\n  lanes:\n    - lane: canary\n      subset: nowhere\n  colour: red\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	l := getLoad(c, 50)
	eventually(t, 15*time.Second, "policy rejection visible in /v1/status", func() (bool, string) {
		s := getStatus(t, st)
		return s.LastRejection != nil && strings.Contains(s.LastRejection.Error, "zz-bad.yaml"), fmt.Sprintf("%+v", s.LastRejection)
	})
	l.stop()
	if l.failed.Load() != 0 {
		t.Fatalf("traffic failed while a bad policy was rejected: %s", l)
	}
	if after := getStatus(t, st).PolicyRevision; after != before {
		t.Fatalf("policy revision changed from %s to %s: the bad set must not apply", before, after)
	}
	requireLane(ctx, t, c, "v2", "canary lane after rejection")
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
}

// faultBrokenRelease: broken filter release: last good keeps running.
func faultBrokenRelease(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client) {
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	copy(garbage, "\x00asm\x01\x00\x00\x00") // a wasm header, then noise: fails to compile
	if err := os.WriteFile(filepath.Join(testEnv.filtersDir, "broken.wasm"), garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(testEnv.filtersDir, "broken.wasm"))
	sum := sha256.Sum256(garbage)
	rel := fmt.Sprintf("apiVersion: meshwarden.io/v1alpha1\nkind: FilterRelease\nmetadata:\n  name: broken-dye\nspec:\n  filter: dye\n  sha256: %s\n  rolloutPercent: 100\n", hex.EncodeToString(sum[:]))
	relPath := filepath.Join(st.PolicyDir, "zz-release.yaml")
	before := getStatus(t, st).PolicyRevision
	if err := os.WriteFile(relPath, []byte(rel), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(relPath) })
	l := getLoad(c, 50)
	eventually(t, 20*time.Second, "the broken release is applied by the plane", func() (bool, string) {
		s := getStatus(t, st)
		return s.PolicyRevision != before, fmt.Sprintf("%+v", s)
	})
	// The gateway fetches the new module, fails to compile it and keeps
	// the last good build running, and says so in its config dump.
	wantSHA := hex.EncodeToString(sum[:])
	eventually(t, 30*time.Second, "gateway reports mw.dye on its last known good build", func() (bool, string) {
		f, msg := gatewayFilter(st, "mw.dye")
		return f != nil && f.SHA256 == wantSHA && f.State == "last_known_good" && f.LastError != "" && f.RunningSHA != wantSHA, msg
	})
	l.stop()
	if l.failed.Load() != 0 {
		t.Fatalf("traffic failed during a broken filter release: %s", l)
	}
	requireLane(ctx, t, c, "v2", "dye no longer applied after a broken release (last good must keep running)")
	if err := os.Remove(relPath); err != nil {
		t.Fatal(err)
	}
}

// faultConsulRestarted: consul stopped and restarted: last snapshot serves.
func faultConsulRestarted(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client) {
	l := getLoad(c, 50)
	st.Consul.Stop()
	eventually(t, 20*time.Second, "plane reports Consul stale", func() (bool, string) {
		s := getStatus(t, st)
		return s.Consul.Stale, fmt.Sprintf("%+v", s.Consul)
	})
	time.Sleep(time.Second)
	if l.failed.Load() != 0 {
		l.stop()
		t.Fatalf("traffic failed while Consul was down: %s", l)
	}
	if err := st.Consul.Restart(ctx); err != nil {
		l.stop()
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "plane back in sync with Consul", func() (bool, string) {
		s := getStatus(t, st)
		return !s.Consul.Stale && s.Consul.Synced, fmt.Sprintf("%+v", s.Consul)
	})
	l.stop()
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Fatalf("traffic across the Consul outage: %s", l)
	}
}

// faultCollectorKilled: collector killed under load: fail-closed, no acknowledged record lost.
func faultCollectorKilled(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client) {
	l := transferLoad(c, 40)
	time.Sleep(1500 * time.Millisecond)
	st.Collector.Kill()
	time.Sleep(1500 * time.Millisecond)
	if err := st.StartCollector(ctx); err != nil {
		l.stop()
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	l.stop()
	if l.ok.Load() == 0 {
		t.Fatalf("no transfer succeeded: %s", l)
	}
	if l.statuses[503] == 0 {
		t.Errorf("no 503 while the collector was down: fail-closed must refuse unaudited transfers: %s", l)
	}
	requireAllAudited(t, st, l)
	verifyAudit(t, st)
	t.Logf("collector kill: %s; every one of %d forwarded transfers is in the WAL", l, len(l.okIDs))
}

// faultGatewayKilled: gateway killed under load: no acknowledged audit record lost.
func faultGatewayKilled(ctx context.Context, t *testing.T, st *demo.Stack, c *demo.Client) {
	l := transferLoad(c, 40)
	time.Sleep(2 * time.Second)
	st.Gateway.Kill()
	time.Sleep(500 * time.Millisecond)
	l.stop()
	if err := st.StartGateway(ctx); err != nil {
		t.Fatal(err)
	}
	if l.ok.Load() == 0 {
		t.Fatalf("no transfer succeeded before the kill: %s", l)
	}
	requireAllAudited(t, st, l)
	verifyAudit(t, st)
	requireLane(ctx, t, c, "v2", "restarted gateway: canary lane")
}

// awaitLane waits up to 30s for a canary-lane request to reach subset want.
func awaitLane(ctx context.Context, t *testing.T, c *demo.Client, want, what string) {
	t.Helper()
	eventually(t, 30*time.Second, what, func() (bool, string) {
		v, err := laneTarget(ctx, c)
		return v == want, fmt.Sprintf("canary -> %q (%v)", v, err)
	})
}

// requireLane fails t unless a canary-lane request reaches subset want.
func requireLane(ctx context.Context, t *testing.T, c *demo.Client, want, what string) {
	t.Helper()
	if v, err := laneTarget(ctx, c); err != nil || v != want {
		t.Fatalf("%s: %q %v (want %q)", what, v, err, want)
	}
}

// requireAllAudited fails t unless every transfer the load saw acknowledged
// has its intent record in the collector's WAL.
func requireAllAudited(t *testing.T, st *demo.Stack, l *loader) {
	t.Helper()
	audited := auditedRequestIDs(t, st)
	missing := 0
	for _, id := range l.okIDs {
		if !audited[id] {
			missing++
		}
	}
	if missing != 0 {
		t.Fatalf("%d of %d acknowledged transfers have no intent record in the WAL (%s)", missing, len(l.okIDs), l)
	}
}
