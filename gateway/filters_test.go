package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshwarden/meshwarden/gateway/internal/guestbuild"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// guests builds the test guests and filters once per test binary.
var guests = guestbuild.New("")

// headersGuest builds gateway/wasmhost's "headers" test guest (it copies
// x-mw-dye into x-mw-lane, default "stable", and adds x-mw-filtered to
// responses) with the standard toolchain.
func headersGuest(t testing.TB) []byte { return testGuest(t, "headers") }

// testGuest builds gateway/wasmhost/testdata/guests/<name> once per test binary.
func testGuest(t testing.TB, name string) []byte {
	t.Helper()
	wasm, err := guests.Build(name, "./wasmhost/testdata/guests/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

// moduleServer serves modules by path and counts fetches.
type moduleServer struct {
	*httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	files   map[string][]byte
}

func startModuleServer(t *testing.T) *moduleServer {
	ms := &moduleServer{files: map[string][]byte{}}
	ms.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms.fetches.Add(1)
		ms.mu.Lock()
		b, ok := ms.files[r.URL.Path]
		ms.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(ms.Close)
	return ms
}

func (ms *moduleServer) put(path string, b []byte) {
	ms.mu.Lock()
	ms.files[path] = b
	ms.mu.Unlock()
}

func configDump(t *testing.T, admin string) ConfigDump {
	t.Helper()
	resp, err := http.Get(admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d ConfigDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFiltersFromECDS(t *testing.T) {
	wasm := headersGuest(t)
	sha := modulefetch.Sum(wasm)
	ms := startModuleServer(t)
	ms.put("/headers.wasm", wasm)
	plane := startPlane(t)
	stable, canary := startUpstream(t, "stable"), startUpstream(t, "canary")
	gw := startGateway(t, plane, "gw-filters", nil)
	// Routes match x-mw-lane, a header only the filter sets: a request can
	// reach "stable" only if the route is chosen after the filter ran.
	rc := routeConfig(
		&route.Route{Name: "canary", Match: prefixMatch("/", &route.HeaderMatcher{Name: "x-mw-lane", HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{
			StringMatch: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: "canary"}}}}), Action: routeTo("canary")},
		&route.Route{Name: "stable", Match: prefixMatch("/", &route.HeaderMatcher{Name: "x-mw-lane",
			HeaderMatchSpecifier: &route.HeaderMatcher_PresentMatch{PresentMatch: true}}), Action: routeTo("stable")},
	)
	base := func(ext *core.TypedExtensionConfig) {
		plane.set("gw-filters", httpListener(t, gw.port(), "r", "mw-headers"), rc, ext,
			edsCluster("stable", nil), edsCluster("canary", nil),
			cla("stable", lbEndpoint(stable.addr(), 0)), cla("canary", lbEndpoint(canary.addr(), 0)))
	}
	base(wasmExt(t, "mw-headers", ms.URL+"/headers.wasm", sha, false))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)
	c := &http.Client{}

	check := func(t *testing.T) {
		t.Helper()
		code, body, h := get(t, c, gw.url+"/x")
		if code != 200 || body != "stable" || h.Get("X-Mw-Filtered") != "1" {
			t.Fatalf("no lane: %d %q filtered=%q, want 200 stable 1", code, body, h.Get("X-Mw-Filtered"))
		}
		if got := (*stable.last.Load()).Get("X-Mw-Seen"); got != "1" {
			t.Fatalf("upstream saw x-mw-seen=%q, want the filter's 1", got)
		}
		code, body, _ = get(t, c, gw.url+"/x", "x-mw-dye", "canary")
		if code != 200 || body != "canary" {
			t.Fatalf("lane canary: %d %q", code, body)
		}
	}
	t.Run("filter effects upstream and route after filters", check)

	// The error counter of a configured filter exists at zero before its
	// first error: a series born at 1 shows no increase() to a rollout's
	// analysis or an alert, and the first broken release would pass.
	t.Run("module error counter starts at zero", func(t *testing.T) {
		if v, ok := scrape(t, gw.admin)[`meshwarden_gateway_filter_module_errors_total{filter="mw-headers"}`]; !ok || v != 0 {
			t.Errorf("module error series for the configured filter: %v (present %v), want 0 in /metrics", v, ok)
		}
	})

	t.Run("bad sha256: last known good keeps running, reason visible", func(t *testing.T) {
		bad := strings.Repeat("0", 64)
		base(wasmExt(t, "mw-headers", ms.URL+"/headers.wasm", bad, false))
		eventually(t, 60*time.Second, "filter error in config_dump", func() bool {
			for _, f := range configDump(t, gw.admin).Filters {
				if f.Name == "mw-headers" && f.State == "last_known_good" && strings.Contains(f.LastError, "sha256") {
					return true
				}
			}
			return false
		})
		check(t)
		resp, err := http.Get(gw.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		_, _ = fmt.Fprint(&sb, readAll(t, resp))
		for _, want := range []string{`meshwarden_gateway_filter_module_errors_total{filter="mw-headers"}`,
			`meshwarden_gateway_filter_callback_duration_seconds_count{filter="mw-headers"`, `meshwarden_gateway_xds_connected 1`,
			`meshwarden_gateway_requests_total{cluster="stable",code="200",route="stable"}`} {
			if !strings.Contains(sb.String(), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	t.Run("fail closed without a known good version", func(t *testing.T) {
		gw2 := startGateway(t, plane, "gw-filters-closed", nil)
		plane.set("gw-filters-closed", httpListener(t, gw2.port(), "r", "mw-headers"), rc,
			wasmExt(t, "mw-headers", ms.URL+"/missing.wasm", sha, false),
			edsCluster("stable", nil), edsCluster("canary", nil),
			cla("stable", lbEndpoint(stable.addr(), 0)), cla("canary", lbEndpoint(canary.addr(), 0)))
		eventually(t, 60*time.Second, "readiness", gw2.g.Ready)
		if code, _, _ := get(t, c, gw2.url+"/x"); code != http.StatusServiceUnavailable {
			t.Fatalf("fail-closed filter missing: %d, want 503", code)
		}
		// The module appears on the server: the gateway retries and recovers
		// without a new xDS push.
		ms.put("/missing.wasm", wasm)
		eventually(t, 60*time.Second, "recovery once the module is served", func() bool {
			code, body, _ := get(t, c, gw2.url+"/x")
			return code == 200 && body == "stable"
		})
	})

	t.Run("fail open without a known good version", func(t *testing.T) {
		gw3 := startGateway(t, plane, "gw-filters-open", nil)
		plane.set("gw-filters-open", httpListener(t, gw3.port(), "r", "mw-headers"), rc,
			wasmExt(t, "mw-headers", ms.URL+"/nowhere.wasm", sha[:63]+"f", true),
			edsCluster("stable", nil), edsCluster("canary", nil),
			cla("stable", lbEndpoint(stable.addr(), 0)), cla("canary", lbEndpoint(canary.addr(), 0)))
		eventually(t, 60*time.Second, "readiness", gw3.g.Ready)
		// Skipped filter: no x-mw-lane is set, so no route matches.
		if code, _, h := get(t, c, gw3.url+"/x"); code != http.StatusNotFound || h.Get("X-Mw-Filtered") != "" {
			t.Fatalf("fail-open filter missing: %d, want 404 without the filter's header", code)
		}
	})
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
	}
}

// TestTrustedFilterRunsWithoutDeadline: a module the operator trusted by
// sha256 runs without the per-callback deadline, the other filter of the
// same chain keeps it, and /config_dump says which is which.
func TestTrustedFilterRunsWithoutDeadline(t *testing.T) {
	headers, noop := headersGuest(t), testGuest(t, "noop")
	ms := startModuleServer(t)
	ms.put("/headers.wasm", headers)
	ms.put("/noop.wasm", noop)
	plane := startPlane(t)
	stable := startUpstream(t, "stable")
	gw := startGateway(t, plane, "gw-trusted", func(c *Config) { c.WasmTrustedSHA256 = []string{modulefetch.Sum(headers)} })
	rc := routeConfig(&route.Route{Name: "all", Match: prefixMatch("/"), Action: routeTo("stable")})
	plane.set("gw-trusted", httpListener(t, gw.port(), "r", "mw-headers", "mw-noop"), rc,
		wasmExt(t, "mw-headers", ms.URL+"/headers.wasm", modulefetch.Sum(headers), false),
		wasmExt(t, "mw-noop", ms.URL+"/noop.wasm", modulefetch.Sum(noop), false),
		edsCluster("stable", nil), cla("stable", lbEndpoint(stable.addr(), 0)))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	code, body, h := get(t, &http.Client{}, gw.url+"/x", "x-mw-dye", "canary")
	if code != 200 || body != "stable" || h.Get("X-Mw-Filtered") != "1" {
		t.Fatalf("through both filters: %d %q filtered=%q", code, body, h.Get("X-Mw-Filtered"))
	}
	if got := (*stable.last.Load()).Get("X-Mw-Lane"); got != "canary" {
		t.Fatalf("upstream saw x-mw-lane=%q: the trusted filter did not run", got)
	}
	want := map[string]bool{"mw-headers": false, "mw-noop": true}
	for _, f := range configDump(t, gw.admin).Filters {
		w, ok := want[f.Name]
		if !ok {
			continue
		}
		if f.State != "running" || f.CallDeadline == nil || *f.CallDeadline != w {
			t.Errorf("filter %s: state %q call_deadline %v, want running with call_deadline=%v", f.Name, f.State, f.CallDeadline, w)
		}
		delete(want, f.Name)
	}
	if len(want) != 0 {
		t.Errorf("filters missing from /config_dump: %v", want)
	}
}

// TestWASIModeFlag: under the default Envoy WASI surface a filter that
// imports a WASI function Envoy lacks (path_open) is refused with the
// names and the way out; with WasmWASI "full" (--wasm-wasi=full) the same
// module runs.
func TestWASIModeFlag(t *testing.T) {
	file := testGuest(t, "wasifile")
	ms := startModuleServer(t)
	ms.put("/file.wasm", file)
	plane := startPlane(t)
	stable := startUpstream(t, "stable")
	for _, mode := range []wasmhost.WASIMode{"", wasmhost.WASIFull} {
		node := "gw-wasi-" + string(mode)
		gw := startGateway(t, plane, node, func(c *Config) { c.WasmWASI = mode })
		rc := routeConfig(&route.Route{Name: "all", Match: prefixMatch("/"), Action: routeTo("stable")})
		plane.set(node, httpListener(t, gw.port(), "r", "mw-file"), rc,
			wasmExt(t, "mw-file", ms.URL+"/file.wasm", modulefetch.Sum(file), false),
			edsCluster("stable", nil), cla("stable", lbEndpoint(stable.addr(), 0)))
		if mode == "" {
			eventually(t, 90*time.Second, "the refusal in /config_dump", func() bool {
				for _, f := range configDump(t, gw.admin).Filters {
					if f.Name == "mw-file" && strings.Contains(f.LastError, "wasi_snapshot_preview1.path_open") && strings.Contains(f.LastError, "--wasm-wasi=full") {
						return true
					}
				}
				return false
			})
			continue
		}
		eventually(t, 90*time.Second, "readiness", gw.g.Ready)
		if code, body, _ := get(t, &http.Client{}, gw.url+"/x"); code != 200 || body != "stable" {
			t.Fatalf("full WASI: %d %q", code, body)
		}
		if got := (*stable.last.Load()).Get("X-Read-Error"); got == "" || got == "none" {
			t.Fatalf("full WASI: upstream saw x-read-error=%q: the filter did not run", got)
		}
	}
}

// TestRetiredPluginsWaitForEveryOlderModel holds a request's reference on a
// model while two newer filter versions are swapped in quickly: retiring the
// middle model must not close the plugins the held model still runs (a
// request that started on it would find its filters closed: 503), and they
// are closed once it is released. A new module URL for the same sha256 (a
// failover to another plane replica) keeps the running plugin.
func TestRetiredPluginsWaitForEveryOlderModel(t *testing.T) {
	wasm := headersGuest(t)
	sha := modulefetch.Sum(wasm)
	ms := startModuleServer(t)
	ms.put("/a.wasm", wasm)
	ms.put("/b.wasm", wasm)
	plane := startPlane(t)
	up := startUpstream(t, "up")
	gw := startGateway(t, plane, "gw-retire", nil)
	rc := routeConfig(&route.Route{Name: "all", Match: prefixMatch("/"), Action: routeTo("up")})
	push := func(path, conf string) {
		plane.set("gw-retire", httpListener(t, gw.port(), "r", "mw-headers"), rc,
			wasmFilterExt(t, "mw-headers", "mw-headers", ms.URL+path, sha, wasmv3.FailurePolicy_FAIL_CLOSED, conf),
			edsCluster("up", nil), cla("up", lbEndpoint(up.addr(), 0)))
	}
	push("/a.wasm", "{}")
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)
	held := gw.g.acquire()
	// Another plugin configuration: another plugin.
	swapTo := func(conf string) *model {
		prev := gw.g.model.Load()
		push("/a.wasm", conf)
		eventually(t, 60*time.Second, "the model with "+conf, func() bool {
			m := gw.g.model.Load()
			return len(m.plugins) == 1 && m.plugins[0] != prev.plugins[0]
		})
		return gw.g.model.Load()
	}
	mid := swapTo("{ }")
	cur := swapTo("{  }")
	live := func() map[*wasmhost.Plugin]bool {
		out := map[*wasmhost.Plugin]bool{}
		for _, p := range gw.g.plugins.all() {
			out[p] = true
		}
		return out
	}
	eventually(t, 30*time.Second, "the middle version closed", func() bool { return !live()[mid.plugins[0]] })
	for _, p := range append(held.plugins, cur.plugins...) {
		if !live()[p] {
			t.Fatalf("plugin %p of a model still in use was retired", p)
		}
	}
	cs, err := held.listener.chain.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		t.Fatalf("a request on the held model: %v", err)
	}
	cs.Close()
	held.refs.Add(-1)
	eventually(t, 30*time.Second, "the held model's plugins closed after its release", func() bool { return len(live()) == 1 })

	push("/b.wasm", "{  }")
	eventually(t, 30*time.Second, "the model with the new URL", func() bool { return gw.g.model.Load() != cur })
	if p := gw.g.model.Load().plugins; len(p) != 1 || p[0] != cur.plugins[0] {
		t.Fatalf("the same code at another URL restarted the filter: plugins %v, want %p", p, cur.plugins[0])
	}
}

// TestFailedVersionForgottenWhenReplaced: the record of a version that could
// not start is kept for its retry backoff only while builds ask for it; a
// stream of broken releases does not accumulate.
func TestFailedVersionForgottenWhenReplaced(t *testing.T) {
	wasm := headersGuest(t)
	sha := modulefetch.Sum(wasm)
	ms := startModuleServer(t)
	ms.put("/good.wasm", wasm)
	plane := startPlane(t)
	up := startUpstream(t, "up")
	gw := startGateway(t, plane, "gw-forget", nil)
	rc := routeConfig(&route.Route{Name: "all", Match: prefixMatch("/"), Action: routeTo("up")})
	push := func(path string) {
		plane.set("gw-forget", httpListener(t, gw.port(), "r", "mw-headers"), rc,
			wasmExt(t, "mw-headers", ms.URL+path, sha, false), edsCluster("up", nil), cla("up", lbEndpoint(up.addr(), 0)))
	}
	// failed returns the failure records kept, and whether one is for
	// sha256 want.
	failed := func(want string) (int, bool) {
		pm := gw.g.plugins
		pm.mu.Lock()
		defer pm.mu.Unlock()
		n, found := 0, false
		for _, job := range pm.pending {
			select {
			case <-job.done:
				if job.err != nil {
					n++
					found = found || strings.Contains(job.err.Error(), want)
				}
			default:
			}
		}
		return n, found
	}
	push("/good.wasm")
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)
	for i := range 3 {
		// Same URL, other code: the sha256 check refuses it.
		bad := strings.Repeat(strconv.Itoa(i), 64)
		plane.set("gw-forget", httpListener(t, gw.port(), "r", "mw-headers"), rc,
			wasmExt(t, "mw-headers", ms.URL+"/good.wasm", bad, false),
			edsCluster("up", nil), cla("up", lbEndpoint(up.addr(), 0)))
		eventually(t, 30*time.Second, "the broken release refused", func() bool { _, ok := failed(bad); return ok })
		if n, _ := failed(bad); n != 1 {
			t.Fatalf("after broken release %d: %d failure records kept, want 1 (the version builds ask for)", i+1, n)
		}
	}
	push("/good.wasm")
	eventually(t, 30*time.Second, "the failure records forgotten after the good release", func() bool { n, _ := failed(""); return n == 0 })
}

// TestSlowUpstreamsDoNotStarveFilteredRequests: requests waiting on a slow
// upstream do not hold the filter's instances. With one instance per filter
// (WasmInstances, --wasm-instances 1), 24 requests reach a blocked upstream
// at once through a filtered listener, and all are answered, filtered, once
// it lets go. Before streams shared instances, only as many as the pool
// got through and the rest waited in the filter until their timeout.
func TestSlowUpstreamsDoNotStarveFilteredRequests(t *testing.T) {
	headers := headersGuest(t)
	ms := startModuleServer(t)
	ms.put("/headers.wasm", headers)
	plane := startPlane(t)
	release := make(chan struct{})
	var arrived atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, r.Header.Get("X-Mw-Lane"))
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	gw := startGateway(t, plane, "gw-slow", func(c *Config) { c.WasmInstances = 1 })
	rc := routeConfig(&route.Route{Name: "all", Match: prefixMatch("/"), Action: routeTo("slow")})
	plane.set("gw-slow", httpListener(t, gw.port(), "r", "mw-headers"), rc,
		wasmExt(t, "mw-headers", ms.URL+"/headers.wasm", modulefetch.Sum(headers), false),
		edsCluster("slow", nil), cla("slow", lbEndpoint(slow.Listener.Addr().String(), 0)))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	const n = 24
	type answer struct {
		code int
		body string
	}
	answers := make(chan answer, n)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}}
	for i := range n {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, gw.url+"/x", nil)
			req.Header.Set("x-mw-dye", "lane-"+strconv.Itoa(i))
			resp, err := client.Do(req)
			if err != nil {
				answers <- answer{0, err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, string(b)}
		}()
	}
	eventually(t, 20*time.Second, strconv.Itoa(n)+" requests at the upstream at once", func() bool { return arrived.Load() == n })
	for _, p := range gw.g.plugins.all() {
		if p.Config().PoolSize != 1 || p.Stats().Instances != 1 {
			t.Errorf("filter %s: PoolSize %d, %d instances; want the one --wasm-instances allows", p.Name(), p.Config().PoolSize, p.Stats().Instances)
		}
	}
	close(release)
	for range n {
		select {
		case a := <-answers:
			if a.code != 200 || !strings.HasPrefix(a.body, "lane-") {
				t.Errorf("answer %d %q, want 200 with the filtered lane", a.code, a.body)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a request released by the upstream was not answered")
		}
	}
}
