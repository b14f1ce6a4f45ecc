package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

// The TestResilience tests run a ResiliencePolicy through the plane's real
// pipeline (policies.LoadFiles → translate.Build → ForNode), check that the
// setting is in the Envoy resources, serve those resources to a gateway
// over ADS, and prove the gateway obeys them against loopback upstreams.

// upstream is a loopback service instance whose behaviour a test sets.
type upstream struct {
	*httptest.Server
	version string
	hits    atomic.Int64
	handle  func(n int64, w http.ResponseWriter, r *http.Request)
}

func newUpstream(t *testing.T, version string, handle func(n int64, w http.ResponseWriter, r *http.Request)) *upstream {
	u := &upstream{version: version, handle: handle}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := u.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if u.handle != nil {
			u.handle(n, w, r)
			return
		}
		_, _ = io.WriteString(w, version)
	}))
	t.Cleanup(u.Close)
	return u
}

// resilienceSetup translates policy against services (name → instances,
// meta version = the upstream's version) and starts a gateway on it. It
// returns the gateway and the resources it was given.
func resilienceSetup(t *testing.T, policy string, services map[string][]*upstream) (*runningGateway, map[resource.Type][]types.Resource) {
	t.Helper()
	cat := &ir.Catalog{Services: map[string]*ir.Service{}}
	for name, us := range services {
		svc := &ir.Service{Name: name}
		for i, u := range us {
			_, p, _ := net.SplitHostPort(u.Listener.Addr().String())
			port, _ := strconv.Atoi(p)
			svc.Instances = append(svc.Instances, ir.Instance{ID: name + "-" + strconv.Itoa(i), Node: "n1", Address: "127.0.0.1", Port: port,
				Meta: map[string]string{"version": u.version}, Healthy: true})
		}
		cat.Services[name] = svc
	}
	ps, diags, err := policies.LoadFiles(map[string][]byte{"resilience.yaml": []byte(policy)}, cat)
	if err != nil {
		t.Fatalf("policy rejected: %v", err)
	}
	if len(diags.Warnings) > 0 {
		t.Logf("policy warnings: %v", diags.All())
	}
	sh, err := translate.Build(cat, ps, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Validate(); err != nil {
		t.Fatalf("Envoy's validation: %v", err)
	}
	snap, err := sh.ForNode(translate.Node{ID: "gw-res", Gateway: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var all []types.Resource
	for _, rs := range snap.Resources {
		all = append(all, rs...)
	}
	plane := startPlane(t)
	plane.set("gw-res", all...)
	gw := startGateway(t, plane, "gw-res", nil)
	eventually(t, 20*time.Second, "gateway ready", gw.g.Ready)
	return gw, snap.Resources
}

func findRoute(t *testing.T, res map[resource.Type][]types.Resource, name string) *route.Route {
	t.Helper()
	for _, r := range res[resource.RouteType] {
		for _, vh := range r.(*route.RouteConfiguration).GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				if rt.GetName() == name {
					return rt
				}
			}
		}
	}
	t.Fatalf("route %q not emitted", name)
	return nil
}

func findCluster(t *testing.T, res map[resource.Type][]types.Resource, name string) *clusterv3.Cluster {
	t.Helper()
	for _, r := range res[resource.ClusterType] {
		if c := r.(*clusterv3.Cluster); c.GetName() == name {
			return c
		}
	}
	t.Fatalf("cluster %q not emitted", name)
	return nil
}

// shopCanaryRoute routes shop's canary lane to subset v2 (version v2), the
// rest to v1; a ResiliencePolicy document follows it.
const shopCanaryRoute = `apiVersion: meshwarden.io/v1alpha1
kind: CanaryRoute
metadata: {name: shop}
spec:
  service: shop
  subsets:
    - {name: v1, selector: {version: v1}}
    - {name: v2, selector: {version: v2}}
  lanes:
    - {lane: canary, subset: v2}
  defaultSubset: v1
---
`

const resilienceHead = "apiVersion: meshwarden.io/v1alpha1\nkind: ResiliencePolicy\nmetadata: {name: shop}\nspec:\n  service: shop\n"

func TestResilienceTimeoutAndRetries(t *testing.T) {
	// Fails the first two tries with 503, then answers; sleeps on /slow.
	u := newUpstream(t, "v1", func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	gw, res := resilienceSetup(t, resilienceHead+"  timeout: 300ms\n  retries: {attempts: 2, on: [5xx], budgetPercent: 50, minConcurrency: 5}\n",
		map[string][]*upstream{"shop": {u}})
	rt := findRoute(t, res, "shop/default").GetRoute()
	if rt.GetTimeout().AsDuration() != 300*time.Millisecond || rt.GetRetryPolicy().GetNumRetries().GetValue() != 2 || rt.GetRetryPolicy().GetRetryOn() != "5xx" {
		t.Fatalf("route not emitted with timeout and retries: %v", rt)
	}
	if rb := findCluster(t, res, "shop").GetCircuitBreakers().GetThresholds()[0].GetRetryBudget(); rb.GetBudgetPercent().GetValue() != 50 {
		t.Fatalf("retry budget not emitted: %v", rb)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	code, body, _ := get(t, c, gw.url+"/", "Host", "shop")
	if code != 200 || body != "ok" || u.hits.Load() != 3 {
		t.Fatalf("retries: got %d %q after %d tries, want 200 \"ok\" after 3", code, body, u.hits.Load())
	}
	start := time.Now()
	code, _, _ = get(t, c, gw.url+"/slow", "Host", "shop")
	if el := time.Since(start); code != http.StatusGatewayTimeout || el > 1500*time.Millisecond {
		t.Fatalf("timeout: got %d after %v, want 504 after about 300ms", code, el)
	}
}

// TestResiliencePerTryTimeout: a try that hangs past perTryTimeout is cut
// and retried, well inside the route's timeout.
func TestResiliencePerTryTimeout(t *testing.T) {
	u := newUpstream(t, "v1", func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	gw, res := resilienceSetup(t, resilienceHead+"  timeout: 4s\n  retries: {attempts: 1, on: [5xx], perTryTimeout: 200ms}\n",
		map[string][]*upstream{"shop": {u}})
	if got := findRoute(t, res, "shop/default").GetRoute().GetRetryPolicy().GetPerTryTimeout().AsDuration(); got != 200*time.Millisecond {
		t.Fatalf("per-try timeout emitted as %v, want 200ms", got)
	}
	start := time.Now()
	code, body, _ := get(t, &http.Client{Timeout: 10 * time.Second}, gw.url+"/", "Host", "shop")
	if el := time.Since(start); code != 200 || body != "ok" || u.hits.Load() != 2 || el > 3*time.Second {
		t.Fatalf("got %d %q after %d tries in %v, want 200 \"ok\" after 2 tries, the first cut at 200ms", code, body, u.hits.Load(), el)
	}
}

func TestResilienceCircuitBreaker(t *testing.T) {
	release := make(chan struct{})
	var entered atomic.Int64
	u := newUpstream(t, "v1", func(n int64, w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "ok")
	})
	for _, tc := range []struct {
		name, breaker string
		held          int // requests that wait (in flight or pending) before the refused one
	}{
		{"max requests", "{maxRequests: 2}", 2},
		{"max connections and pending", "{maxConnections: 1, maxPendingRequests: 1}", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release = make(chan struct{})
			entered.Store(0)
			gw, res := resilienceSetup(t, resilienceHead+"  circuitBreaker: "+tc.breaker+"\n", map[string][]*upstream{"shop": {u}})
			if th := findCluster(t, res, "shop").GetCircuitBreakers().GetThresholds(); len(th) != 1 {
				t.Fatalf("circuit breakers not emitted: %v", th)
			}
			c := &http.Client{Timeout: 10 * time.Second}
			var wg sync.WaitGroup
			codes := make(chan int, tc.held)
			for range tc.held {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, _, _ := get(t, c, gw.url+"/", "Host", "shop")
					codes <- code
				}()
			}
			eventually(t, 5*time.Second, "the held requests to arrive", func() bool {
				return entered.Load() >= 1 && gatewayInflight(gw, "shop") >= int64(tc.held)
			})
			code, body, h := get(t, c, gw.url+"/", "Host", "shop")
			if code != http.StatusServiceUnavailable || h.Get("X-Envoy-Overloaded") != "true" {
				t.Fatalf("over the breaker: got %d %q (x-envoy-overloaded %q), want 503 with x-envoy-overloaded: true", code, body, h.Get("X-Envoy-Overloaded"))
			}
			close(release)
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != 200 {
					t.Fatalf("a request within the breaker got %d, want 200", code)
				}
			}
		})
	}
}

// gatewayInflight is the number of requests the gateway holds for cluster
// (admitted or waiting for a connection).
func gatewayInflight(gw *runningGateway, cluster string) int64 {
	m := gw.g.acquire()
	if m == nil {
		return 0
	}
	defer m.refs.Add(-1)
	c := m.clusters[cluster]
	if c == nil {
		return 0
	}
	return c.live.requests.Load()
}

func TestResilienceRateLimit(t *testing.T) {
	u := newUpstream(t, "v1", nil)
	gw, res := resilienceSetup(t, resilienceHead+"  rateLimit: {requests: 3, interval: 1h}\n", map[string][]*upstream{"shop": {u}})
	if _, ok := findRoute(t, res, "shop/default").GetTypedPerFilterConfig()[translate.LocalRateLimitFilterName]; !ok {
		t.Fatal("local rate limit not emitted on the route")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range 3 {
		if code, _, _ := get(t, c, gw.url+"/", "Host", "shop"); code != 200 {
			t.Fatalf("request %d within the limit got %d", i+1, code)
		}
	}
	if code, body, _ := get(t, c, gw.url+"/", "Host", "shop"); code != http.StatusTooManyRequests {
		t.Fatalf("4th request got %d %q, want 429", code, body)
	}
	if u.hits.Load() != 3 {
		t.Fatalf("upstream saw %d requests, want 3", u.hits.Load())
	}
}

func TestResilienceFaultInjection(t *testing.T) {
	u := newUpstream(t, "v1", nil)
	t.Run("abort", func(t *testing.T) {
		gw, res := resilienceSetup(t, resilienceHead+"  fault: {abort: {httpStatus: 418, percent: 100}}\n", map[string][]*upstream{"shop": {u}})
		if _, ok := findRoute(t, res, "shop/default").GetTypedPerFilterConfig()[translate.FaultFilterName]; !ok {
			t.Fatal("fault not emitted on the route")
		}
		before := u.hits.Load()
		code, body, _ := get(t, &http.Client{Timeout: 10 * time.Second}, gw.url+"/", "Host", "shop")
		if code != 418 || u.hits.Load() != before {
			t.Fatalf("got %d %q (upstream hit %d times), want 418 without reaching the upstream", code, body, u.hits.Load()-before)
		}
	})
	t.Run("delay", func(t *testing.T) {
		gw, _ := resilienceSetup(t, resilienceHead+"  fault: {delay: {fixed: 250ms, percent: 100}}\n", map[string][]*upstream{"shop": {u}})
		start := time.Now()
		code, body, _ := get(t, &http.Client{Timeout: 10 * time.Second}, gw.url+"/", "Host", "shop")
		if el := time.Since(start); code != 200 || body != "v1" || el < 250*time.Millisecond {
			t.Fatalf("got %d %q after %v, want 200 \"v1\" after at least 250ms", code, body, el)
		}
	})
}

func TestResilienceMirror(t *testing.T) {
	primary := newUpstream(t, "v1", nil)
	hosts := make(chan string, 4)
	shadow := newUpstream(t, "v1", func(_ int64, w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		w.WriteHeader(http.StatusInternalServerError) // never seen by the caller
	})
	gw, res := resilienceSetup(t, resilienceHead+"  mirror: {service: shop-next}\n",
		map[string][]*upstream{"shop": {primary}, "shop-next": {shadow}})
	if m := findRoute(t, res, "shop/default").GetRoute().GetRequestMirrorPolicies(); len(m) != 1 || m[0].GetCluster() != "shop-next" {
		t.Fatalf("mirror not emitted: %v", m)
	}
	code, body, _ := get(t, &http.Client{Timeout: 10 * time.Second}, gw.url+"/x", "Host", "shop:8080")
	if code != 200 || body != "v1" {
		t.Fatalf("primary answer: got %d %q", code, body)
	}
	select {
	case h := <-hosts:
		if h != "shop-shadow:8080" {
			t.Fatalf("shadow request Host %q, want shop-shadow:8080", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no shadow request within 5s")
	}
}

func TestResilienceOutlierDetection(t *testing.T) {
	good := newUpstream(t, "v1", nil)
	bad := newUpstream(t, "v1", func(_ int64, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	gw, res := resilienceSetup(t, resilienceHead+"  outlierDetection: {consecutive5xx: 2, baseEjectionTime: 1m, maxEjectionPercent: 50}\n",
		map[string][]*upstream{"shop": {good, bad}})
	if od := findCluster(t, res, "shop").GetOutlierDetection(); od.GetConsecutive_5Xx().GetValue() != 2 {
		t.Fatalf("outlier detection not emitted: %v", od)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	for range 8 {
		get(t, c, gw.url+"/", "Host", "shop")
	}
	if bad.hits.Load() != 2 {
		t.Fatalf("the failing endpoint got %d requests, want 2 (ejected after 2 consecutive 5xx)", bad.hits.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 10 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.url+"/", nil)
		req.Host = "shop"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after ejection got %d, want 200 from the healthy endpoint", resp.StatusCode)
		}
	}
}

// TestResilienceHealthScoreFromGateway scores subsets from a real
// gateway's /metrics: v1 healthy, v2 failing every request and slow.
func TestResilienceHealthScoreFromGateway(t *testing.T) {
	v1 := newUpstream(t, "v1", nil)
	v2 := newUpstream(t, "v2", func(_ int64, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(120 * time.Millisecond)
		w.WriteHeader(http.StatusBadGateway)
	})
	policy := shopCanaryRoute + resilienceHead + "  healthWeights: {latency: 0.3, errors: 0.5, throughput: 0.1, saturation: 0.1, latencyTarget: 100ms}\n"
	gw, _ := resilienceSetup(t, policy, map[string][]*upstream{"shop": {v1, v2}})
	ps, _, err := policies.LoadFiles(map[string][]byte{"p.yaml": []byte(policy)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := health.New(health.Config{Targets: []string{gw.admin + "/metrics"}, Interval: time.Minute, Threshold: 0.7,
		Policy: func() *ir.PolicySet { return ps }})
	c := &http.Client{Timeout: 10 * time.Second}
	traffic := func() {
		for range 10 {
			get(t, c, gw.url+"/", "Host", "shop")
			get(t, c, gw.url+"/", "Host", "shop", "x-mw-dye", "canary")
		}
	}
	traffic()
	sc.Probe(context.Background())
	traffic()
	sc.Probe(context.Background())
	scores := map[string]health.Score{}
	for _, s := range sc.Status().Scores {
		scores[s.Subset] = s
	}
	good, bad := scores["v1"], scores["v2"]
	if good.Service != "shop" || good.Unhealthy || good.Score < 0.9 {
		t.Fatalf("v1 score %+v, want healthy", good)
	}
	// 1 - (0.3*1 + 0.5*1 + 0.1*0 + 0.1*0) = 0.2
	if !bad.Unhealthy || bad.Signals.ErrorRate != 1 || bad.Signals.P95Seconds < 0.1 || bad.Score > 0.25 {
		t.Fatalf("v2 score %+v, want about 0.2 and unhealthy", bad)
	}
	if sc.ProbeInterval() != 15*time.Second {
		t.Fatalf("probe interval %v, want the fast 15s (1m/4) while v2 is unhealthy", sc.ProbeInterval())
	}
}

// TestResilienceRetryBudget: four requests fail at once; a 0% budget with
// minConcurrency 1 lets about one retry through, where the policy's
// three attempts each would make 16 tries.
func TestResilienceRetryBudget(t *testing.T) {
	var arrived atomic.Int64
	barrier := make(chan struct{})
	u := newUpstream(t, "v1", func(n int64, w http.ResponseWriter, _ *http.Request) {
		switch a := arrived.Add(1); {
		case a == 4:
			close(barrier)
		case a > 4:
			// A retry holds its budget slot a while, so the other
			// requests' failures find the budget spent.
			time.Sleep(300 * time.Millisecond)
		}
		select { // the four first tries fail together
		case <-barrier:
		case <-time.After(3 * time.Second):
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	gw, res := resilienceSetup(t, resilienceHead+"  retries: {attempts: 3, on: [5xx], budgetPercent: 0, minConcurrency: 1}\n", map[string][]*upstream{"shop": {u}})
	if rb := findCluster(t, res, "shop").GetCircuitBreakers().GetThresholds()[0].GetRetryBudget(); rb.GetMinRetryConcurrency().GetValue() != 1 || rb.GetBudgetPercent().GetValue() != 0 {
		t.Fatalf("retry budget not emitted: %v", rb)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _, _ := get(t, c, gw.url+"/", "Host", "shop"); code != http.StatusServiceUnavailable {
				t.Errorf("got %d, want the upstream's 503", code)
			}
		}()
	}
	wg.Wait()
	if n := u.hits.Load(); n != 5 {
		t.Fatalf("upstream saw %d tries, want 5 (4 first tries + the budget's one retry; 7 or more with the default 3 concurrent retries)", n)
	}
}

// TestResilienceUnsupportedRefused: what the gateway cannot obey is a NACK
// with the reason, never silently ignored.
func TestResilienceUnsupportedRefused(t *testing.T) {
	half := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 50}}
	all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}
	bucket := &typev3.TokenBucket{MaxTokens: 1, FillInterval: durationpb.New(time.Second)}
	routeWith := func(cfg map[string]*anypb.Any, mirrors ...*route.RouteAction_RequestMirrorPolicy) *route.Route {
		return &route.Route{Name: "r", Match: prefixMatch("/"), TypedPerFilterConfig: cfg,
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "c"}, RequestMirrorPolicies: mirrors}}}
	}
	for _, tc := range []struct {
		name, want string
		r          *route.Route
	}{
		{"partial rate limit share", "below 100%", routeWith(map[string]*anypb.Any{localRateLimitFilter: mustAny(t, &lrlv3.LocalRateLimit{StatPrefix: "x", TokenBucket: bucket, FilterEnabled: half, FilterEnforced: all})})},
		{"percentage delay", "only fixed_delay", routeWith(map[string]*anypb.Any{faultFilter: mustAny(t, &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_HeaderDelay_{HeaderDelay: &commonfaultv3.FaultDelay_HeaderDelay{}}}})})},
		{"grpc abort", "only abort.http_status", routeWith(map[string]*anypb.Any{faultFilter: mustAny(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14}}})})},
		{"cluster_header mirror", "cluster_header", routeWith(nil, &route.RouteAction_RequestMirrorPolicy{ClusterHeader: "x-mirror"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileRoute(tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
	t.Run("listener-wide bucket", func(t *testing.T) {
		err := checkBuiltinFilter(mustAny(t, &lrlv3.LocalRateLimit{StatPrefix: "x", TokenBucket: bucket}))
		if err == nil || !strings.Contains(err.Error(), "per route") {
			t.Fatalf("err %v", err)
		}
	})
}

// TestResilienceRealPlaneOnRealConsul: a ResiliencePolicy served by the
// real plane watching a real Consul agent shows in the plane's config dump
// of the gateway (the rate limit, the v2 subset's circuit breaker) and the
// gateway enforces the rate limit.
func TestResilienceRealPlaneOnRealConsul(t *testing.T) {
	_, consul := consultest.Long(t)
	v1, v2 := startUpstream(t, "v1"), startUpstream(t, "v2")
	registerShop(t, consul, "shop-1", v1, "v1", api.HealthPassing)
	registerShop(t, consul, "shop-2", v2, "v2", api.HealthPassing)
	files := map[string][]byte{"shop.yaml": []byte(shopCanaryRoute + resilienceHead + `  rateLimit: {requests: 5, interval: 1h}
  subsets:
    - subset: v2
      circuitBreaker: {maxRequests: 1}
`)}
	ps, _, err := policies.LoadFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(controlplane.Config{Consul: consul, Debounce: 5 * time.Millisecond, InsecureNoAuth: true,
		Watch:    consulwatch.Options{WaitTime: 30 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Policies: ps})
	if err != nil {
		t.Fatal(err)
	}
	lis, _ := serveRealPlane(t, cp)
	gw := startGateway(t, &planeServer{t: t, addr: lis.Addr().String()}, "gw-res-real", nil)
	eventually(t, 30*time.Second, "readiness from the real plane", gw.g.Ready)
	var dump []byte
	eventually(t, 30*time.Second, "the gateway's config dump", func() bool {
		dump, err = cp.ConfigDump("gw-res-real")
		return err == nil && strings.Contains(string(dump), "shop~v2")
	})
	for _, want := range []string{"envoy.filters.http.local_ratelimit", "max_tokens: 5", "max_requests: 1"} {
		if !strings.Contains(string(dump), want) {
			t.Fatalf("the plane's resources lack %q", want)
		}
	}
	c := &http.Client{Timeout: 10 * time.Second}
	ok := 0
	for range 7 {
		code, _, _ := get(t, c, gw.url+"/", "Host", "shop")
		switch code {
		case 200:
			ok++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("got %d, want 200 or 429", code)
		}
	}
	if ok != 5 {
		t.Fatalf("%d of 7 requests admitted, want the bucket's 5", ok)
	}
}
