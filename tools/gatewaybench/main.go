// Command bench measures the gateway side by side with a bare
// httputil.ReverseProxy and nginx, on the same upstream, in one run:
//
//	go run ./tools/gatewaybench -duration 5s -rounds 3 -rate 1000
//
// Rows: direct (no proxy, the floor), bare httputil.ReverseProxy, the
// gateway without filters, the gateway with the dye+audit+trace chain
// (built from filters/*/wasm, delivered by ECDS from an in-process
// go-control-plane server, audit and trace batches going to sinks over the
// mw-audit and mw-otlp clusters), and nginx when the nginx binary is on PATH.
//
// Two measurements per row: closed-loop throughput (-conc workers for
// -duration, rounds interleaved so machine noise hits every row alike) and
// an open-loop fixed rate (-rate req/s, latency measured from each request's
// scheduled send time, so a stall is not hidden by coordinated omission).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/gateway"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
)

// Filter configurations of the chain: every request is dyed, audited
// (rule on GET /, batched to mw-audit) and traced (sampled, batched to mw-otlp).
var filterConfigs = map[string]string{
	"dye":   `{"mode":"ingress","rules":[{"name":"beta","match":{"headers":[{"name":"x-beta","exact":"1"}]},"lane":"beta"}],"defaultLane":"stable"}`,
	"audit": `{"rules":[{"name":"all","methods":["GET"],"path":{"prefix":"/"},"opType":"READ","level":"info","resource":"bench"}],"collector":{"cluster":"mw-audit","timeoutMs":2000},"batch":{"maxEvents":100,"flushIntervalMs":200,"bufferEvents":10000}}`,
	"trace": `{"serviceName":"bench-gateway","spanKind":"server","sampling":{"ratio":1.0},"collector":{"cluster":"mw-otlp","path":"/v1/traces","timeoutMs":2000},"batch":{"maxSpans":128,"flushIntervalMs":200,"bufferSpans":4096}}`,
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "length of each measurement")
	rounds := flag.Int("rounds", 3, "interleaved rounds of the throughput measurement")
	conc := flag.Int("conc", 32, "closed-loop workers")
	rate := flag.Int("rate", 1000, "open-loop request rate (req/s)")
	filtersDir := flag.String("filters-dir", "", "directory with dye.wasm, audit.wasm, trace.wasm (default: build them)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file (go tool pprof -sample_index=alloc_space)")
	rows := flag.String("rows", "", "measure only the proxy rows whose name matches this regexp (direct and bare ReverseProxy always run); e.g. -rows 'native|no filters' with -cpuprofile")
	flag.Parse()
	only, err := regexp.Compile(*rows)
	if err != nil {
		log.Fatalf("-rows: %v", err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *memProfile != "" {
		defer writeHeapProfile(*memProfile)
	}
	if err := run(ctx, *duration, *rounds, *conc, *rate, *filtersDir, only); err != nil {
		log.Print(err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// writeHeapProfile writes the allocation profile to path.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Print(err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		log.Print(err)
	}
}

type target struct{ name, url string }

// run sets the bench up (upstream, sinks, modules, an in-process plane, the
// proxies), measures every target and prints the report.
func run(ctx context.Context, d time.Duration, rounds, conc, rate int, filtersDir string, only *regexp.Regexp) error {
	b, err := newBench(ctx)
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.loadModules(filtersDir); err != nil {
		return err
	}
	if err := b.startPlane(); err != nil {
		return err
	}
	targets, nginxNote, err := b.targets(only)
	if err != nil {
		return err
	}
	rps, cpu, lats := measure(ctx, targets, d, rounds, conc, rate)
	fmt.Printf("go run ./tools/gatewaybench -duration %s -rounds %d -conc %d -rate %d   (GOMAXPROCS=%d, %s)\n\n",
		d, rounds, conc, rate, runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	printTargets(targets, rps, cpu, lats)
	if nginxNote != "" {
		fmt.Println("\n" + nginxNote)
	}
	return printFilterCost(b.reg)
}

// bench is the set-up every target shares: one upstream, one sink for the
// audit and trace batches, the filter modules and their server, and an
// in-process go-control-plane ADS server.
type bench struct {
	ctx      context.Context
	tmp      string
	upstream string // the upstream's address
	sink     string // the audit/trace sink's address
	mods     map[string][]byte
	hdr      []byte // the small header test guest (control rows)
	modAddr  string
	cache    cachev3.SnapshotCache
	plane    net.Listener
	reg      *prometheus.Registry // the chain gateway's, read by the report
	closers  []func()
	// chainRuntime is how the default gateway runs the chain: "native" when
	// the modules are the official builds (filters/official.sha256), else
	// "wasm". nativeOff is --wasm-native=off for the gateway being started.
	chainRuntime string
	nativeOff    bool
}

func newBench(ctx context.Context) (*bench, error) {
	tmp, err := os.MkdirTemp("", "gw-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{ctx: ctx, tmp: tmp, mods: map[string][]byte{}, reg: prometheus.NewRegistry()}
	b.onClose(func() { os.RemoveAll(tmp) })
	b.upstream = serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true,"service":"upstream"}`)
	}))
	b.sink = serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(200)
	}))
	return b, nil
}

// onClose registers f to run at close, last registered first.
func (b *bench) onClose(f func()) { b.closers = append(b.closers, f) }

func (b *bench) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// loadModules reads (or builds) the product filters and the header test
// guest, and serves them.
func (b *bench) loadModules(filtersDir string) error {
	if filtersDir == "" {
		filtersDir = filepath.Join(b.tmp, "filters")
		if err := buildFilters(filtersDir); err != nil {
			return err
		}
	}
	for _, name := range filters.Order() {
		w, err := os.ReadFile(filepath.Join(filtersDir, name+".wasm"))
		if err != nil {
			return fmt.Errorf("filter %s: %w (run make filters or pass -filters-dir)", name, err)
		}
		b.mods["/"+name+".wasm"] = w
	}
	o, err := filters.OfficialBuilds()
	if err != nil {
		return err
	}
	b.chainRuntime = "native"
	for _, name := range filters.Order() {
		if modulefetch.Sum(b.mods["/"+name+".wasm"]) != o.SHA256[name] {
			b.chainRuntime = "wasm: " + name + ".wasm is not the official build (another toolchain than " + o.GoVersion + "?)"
		}
	}
	// Control: three copies of wasmhost's small header test guest.
	hdrDir := filepath.Join(b.tmp, "hdr")
	if err := buildGuest(hdrDir); err != nil {
		return err
	}
	hdr, err := os.ReadFile(filepath.Join(hdrDir, "headers.wasm"))
	if err != nil {
		return err
	}
	b.hdr = hdr
	b.mods["/headers.wasm"] = hdr
	b.modAddr = serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, ok := b.mods[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(m)
	}))
	return nil
}

// startPlane starts the in-process ADS server with its snapshot cache.
func (b *bench) startPlane() error {
	b.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(b.ctx, b.cache, nil))
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.plane = pl
	go func() { _ = gs.Serve(pl) }()
	b.onClose(gs.Stop)
	return nil
}

// targets starts every proxy and lists the rows: direct, bare
// ReverseProxy, the gateways, and nginx when installed (else a note why not).
func (b *bench) targets(only *regexp.Regexp) ([]target, string, error) {
	upURL, _ := url.Parse("http://" + b.upstream)
	bare := httputil.NewSingleHostReverseProxy(upURL)
	bare.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	targets := []target{
		{"direct (no proxy)", "http://" + b.upstream + "/"},
		{"bare httputil.ReverseProxy", "http://" + serve(bare) + "/"},
	}
	for _, gw := range []struct {
		row, node                       string
		withFilters, trusted, nativeOff bool
		chain                           []string
	}{
		{"gateway, no filters", "bench-plain", false, false, false, nil},
		{"gateway, dye+audit+trace (default: " + b.chainRuntime + ")", "bench-chain", true, false, false, nil},
		{"gateway, dye+audit+trace, wasm (--wasm-native=off)", "bench-chain-wasm", true, false, true, nil},
		{"gateway, dye+audit+trace, wasm, trusted by sha256 (no call deadline)", "bench-chain-trusted", true, true, true, nil},
		{"gateway, 3× small header filter (control)", "bench-headers", false, false, false, []string{"h1", "h2", "h3"}},
	} {
		if !only.MatchString(gw.row) {
			continue
		}
		b.nativeOff = gw.nativeOff
		addr, err := b.startGateway(gw.node, gw.withFilters, gw.trusted, gw.chain...)
		if err != nil {
			return nil, "", err
		}
		targets = append(targets, target{gw.row, "http://" + addr + "/"})
	}
	nginxNote := "nginx: not installed (apt-get install -y nginx), row skipped"
	if !only.MatchString("nginx") {
		nginxNote = ""
	} else if stop, addr, err := startNginx(b.tmp, b.upstream); err == nil {
		b.onClose(stop)
		targets = append(targets, target{"nginx (Debian) proxy_pass, keepalive", "http://" + addr + "/"})
		nginxNote = ""
	} else if !strings.Contains(err.Error(), "not found") {
		nginxNote = "nginx: " + err.Error()
	}
	return targets, nginxNote, nil
}

// startGateway publishes node's configuration and starts a gateway for it:
// the product chain withFilters, or chain copies of the header guest.
// trusted: the product modules are listed by sha256 (--wasm-trusted-*), so
// they run without the per-callback deadline.
func (b *bench) startGateway(node string, withFilters, trusted bool, chain ...string) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	if err := b.publish(node, lis.Addr().(*net.TCPAddr).Port, withFilters, chain); err != nil {
		return "", err
	}
	g, err := gateway.New(b.ctx, gateway.Config{XDSAddress: b.plane.Addr().String(), XDSInsecure: true, NodeID: node, Listener: lis,
		Registry: regFor(withFilters && !trusted && !b.nativeOff, b.reg), WasmTrustedSHA256: trustedSums(trusted, b.mods), WasmNativeOff: b.nativeOff,
		CacheDir: filepath.Join(b.tmp, node), Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return "", err
	}
	if err := g.Start(b.ctx); err != nil {
		return "", err
	}
	b.onClose(func() { _ = g.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for !g.Ready() {
		if time.Now().After(deadline) {
			return "", fmt.Errorf("gateway %s not ready in 60s", node)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return lis.Addr().String(), nil
}

// publish sets node's snapshot: a listener on port with the filters, the
// route to the upstream, and the upstream, audit and OTLP clusters.
func (b *bench) publish(node string, port int, withFilters bool, chain []string) error {
	var ext []types.Resource
	var names []string
	if len(chain) > 0 {
		for _, name := range chain {
			names = append(names, name)
			ext = append(ext, wasmExt(name, "http://"+b.modAddr+"/headers.wasm", modulefetch.Sum(b.hdr), "{}"))
		}
	} else if withFilters {
		for _, name := range filters.Order() {
			names = append(names, name)
			ext = append(ext, wasmExt(name, "http://"+b.modAddr+"/"+name+".wasm", modulefetch.Sum(b.mods["/"+name+".wasm"]), filterConfigs[name]))
		}
	}
	rs := append(ext, httpListener(port, names), routes(),
		edsCluster("upstream"), edsCluster(meshnames.AuditClusterName), edsCluster(meshnames.OTLPClusterName),
		cla("upstream", b.upstream), cla(meshnames.AuditClusterName, b.sink), cla(meshnames.OTLPClusterName, b.sink))
	byType := map[resource.Type][]types.Resource{}
	for _, r := range rs {
		a, _ := anypb.New(r.(proto.Message))
		byType[a.GetTypeUrl()] = append(byType[a.GetTypeUrl()], r)
	}
	snap, err := cachev3.NewSnapshot("1", byType)
	if err != nil {
		return err
	}
	return b.cache.SetSnapshot(b.ctx, node, snap)
}

// latency is one target's open-loop result.
type latency struct {
	p50, p99, max time.Duration
	errs          int
}

// measure warms every target up, then runs rounds of the closed-loop
// throughput measurement (interleaved) and one open-loop latency
// measurement per target.
func measure(ctx context.Context, targets []target, d time.Duration, rounds, conc, rate int) ([][]float64, [][]float64, []latency) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	// Warm up every target (pools, wasm instances).
	for _, t := range targets {
		closedLoop(ctx, client, t.url, conc, time.Second)
	}
	rps := make([][]float64, len(targets))
	cpu := make([][]float64, len(targets))
	for r := 0; r < rounds; r++ {
		for i, t := range targets {
			cpu0 := processCPU()
			n, errs := closedLoop(ctx, client, t.url, conc, d)
			if errs > 0 {
				fmt.Fprintf(os.Stderr, "%s: %d errors\n", t.name, errs)
			}
			rps[i] = append(rps[i], float64(n)/d.Seconds())
			if n > 0 {
				cpu[i] = append(cpu[i], float64((processCPU()-cpu0).Microseconds())/float64(n))
			}
		}
	}
	lats := make([]latency, len(targets))
	for i, t := range targets {
		ds, errs := openLoop(ctx, client, t.url, rate, d)
		lats[i] = latency{pct(ds, 50), pct(ds, 99), pct(ds, 100), errs}
	}
	return rps, cpu, lats
}

// processCPU is the CPU time (user + system) this process has used so far.
// The load generator, the upstream, the sinks and every proxy share the
// process, so the CPU a closed-loop round uses per request, compared
// between rows, is what each proxy costs — a figure other processes on a
// shared machine do not move, unlike req/s.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// printTargets prints the main table: throughput against the bare
// ReverseProxy (row 1), latency at the fixed rate against direct (row 0).
func printTargets(targets []target, rps, cpu [][]float64, lats []latency) {
	fmt.Println("| target | req/s (closed loop, median of rounds) | × bare ReverseProxy | process CPU µs per request (median) | p50 @ rate | p99 @ rate | added p99 vs direct | errors @ rate |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	med := func(xs []float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	for i, t := range targets {
		fmt.Printf("| %s | %.0f | %.2f | %.1f | %s | %s | %s | %d |\n", t.name, med(rps[i]), med(rps[i])/med(rps[1]), med(cpu[i]),
			lats[i].p50.Round(time.Microsecond), lats[i].p99.Round(time.Microsecond),
			(lats[i].p99 - lats[0].p99).Round(time.Microsecond), lats[i].errs)
	}
}

// printFilterCost prints the per-filter cost as the wasm host measured it
// (every callback of the run), from the chain gateway's registry.
func printFilterCost(reg *prometheus.Registry) error {
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	fmt.Println("\n| filter | callbacks | mean µs per callback | total µs per request (callbacks/requests) |")
	fmt.Println("|---|---:|---:|---:|")
	var reqs float64
	for _, mf := range mfs {
		if mf.GetName() == "meshwarden_gateway_requests_total" {
			for _, m := range mf.GetMetric() {
				reqs += m.GetCounter().GetValue()
			}
		}
	}
	// The duration histogram times a sample of the callbacks; the counter
	// counts them all.
	calls := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "meshwarden_gateway_filter_callbacks_total" {
			for _, m := range mf.GetMetric() {
				calls[filterLabel(m)] += m.GetCounter().GetValue()
			}
		}
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "meshwarden_gateway_filter_") && mf.GetName() != "meshwarden_gateway_filter_callback_duration_seconds" && mf.GetName() != "meshwarden_gateway_filter_callbacks_total" {
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v > 0 {
					fmt.Fprintf(os.Stderr, "%s %v = %.0f\n", mf.GetName(), m.GetLabel()[0].GetValue(), v)
				}
			}
		}
		if mf.GetName() != "meshwarden_gateway_filter_callback_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			name := filterLabel(m)
			n := float64(h.GetSampleCount())
			if n == 0 {
				continue
			}
			mean := h.GetSampleSum() / n
			fmt.Printf("| %s | %.0f | %.1f | %.1f |\n", name, calls[name], mean*1e6, mean*calls[name]/reqs*1e6)
		}
	}
	return nil
}

// filterLabel returns the value of m's "filter" label.
func filterLabel(m *dto.Metric) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == "filter" {
			return l.GetValue()
		}
	}
	return ""
}

// regFor gives the chain gateway the registry the report reads.
func regFor(chain bool, reg *prometheus.Registry) *prometheus.Registry {
	if chain {
		return reg
	}
	return nil
}

func serve(h http.Handler) string {
	s := httptest.NewUnstartedServer(h)
	s.Start()
	return s.Listener.Addr().String()
}

func buildFilters(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	for _, name := range filters.Order() {
		// make filters' flags: the official (reproducible) build.
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-o", filepath.Join(dir, name+".wasm"), "./filters/"+name+"/wasm")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build filter %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

func buildGuest(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", filepath.Join(dir, "headers.wasm"), "./gateway/wasmhost/testdata/guests/headers")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build header guest: %v\n%s", err, out)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func startNginx(dir, upstream string) (func(), string, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/nginx"); e != nil {
			return nil, "", fmt.Errorf("nginx not found")
		}
		bin = "/usr/sbin/nginx"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	l.Close()
	ndir := filepath.Join(dir, "nginx")
	_ = os.MkdirAll(filepath.Join(ndir, "logs"), 0o755)
	conf := fmt.Sprintf(`worker_processes %d;
error_log %s/logs/error.log warn;
pid %s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;
  upstream up { server %s; keepalive 256; }
  server {
    listen %s;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`, runtime.NumCPU(), ndir, ndir, ndir, ndir, ndir, ndir, ndir, upstream, addr)
	cf := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-p", ndir, "-c", cf, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return stop, addr, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", fmt.Errorf("nginx did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closedLoop runs conc workers sending requests back to back for d.
func closedLoop(ctx context.Context, c *http.Client, u string, conc int, d time.Duration) (int64, int64) {
	var n, errs atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if do(ctx, c, u) == nil {
					n.Add(1)
				} else if ctx.Err() == nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), errs.Load()
}

// openLoop sends rate req/s for d; each latency counts from the request's
// scheduled time.
func openLoop(ctx context.Context, c *http.Client, u string, rate int, d time.Duration) ([]time.Duration, int) {
	total := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, total)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := do(ctx, c, u); err != nil {
				errs.Add(1)
			}
			lat[i] = time.Since(at)
		}()
	}
	wg.Wait()
	return lat, int(errs.Load())
}

func do(ctx context.Context, c *http.Client, u string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

// --- xDS resources ---

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func ads() *core.ConfigSource {
	return &core.ConfigSource{ResourceApiVersion: core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}}
}

func httpListener(port int, ecds []string) *listener.Listener {
	var fs []*hcm.HttpFilter
	for _, n := range ecds {
		fs = append(fs, &hcm.HttpFilter{Name: n, ConfigType: &hcm.HttpFilter_ConfigDiscovery{ConfigDiscovery: &core.ExtensionConfigSource{
			ConfigSource: ads(), TypeUrls: []string{"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"}}}})
	}
	fs = append(fs, &hcm.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}})
	h := &hcm.HttpConnectionManager{StatPrefix: "bench", HttpFilters: fs,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{ConfigSource: ads(), RouteConfigName: "bench"}}}
	return &listener.Listener{Name: "bench-" + strconv.Itoa(port),
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: "127.0.0.1",
			PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)}}}},
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(h)}}}}}}
}

func routes() *route.RouteConfiguration {
	return &route.RouteConfiguration{Name: "bench", VirtualHosts: []*route.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*route.Route{{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "upstream"}}}}}}}}
}

func edsCluster(name string) *cluster.Cluster {
	return &cluster.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: ads()}}
}

func cla(name, addr string) *endpoint.ClusterLoadAssignment {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
		HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{Address: &core.Address_SocketAddress{
			SocketAddress: &core.SocketAddress{Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(p)}}}}}}}}}}}
}

func wasmExt(name, uri, sha, conf string) *core.TypedExtensionConfig {
	w := &wasmfilter.Wasm{Config: &wasmv3.PluginConfig{Name: name, RootId: name, Configuration: mustAny(wrapperspb.String(conf)),
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{VmId: name, Runtime: "envoy.wasm.runtime.v8",
			Code: &core.AsyncDataSource{Specifier: &core.AsyncDataSource_Remote{Remote: &core.RemoteDataSource{
				HttpUri: &core.HttpUri{Uri: uri, HttpUpstreamType: &core.HttpUri_Cluster{Cluster: "mw-modules"}, Timeout: durationpb.New(5 * time.Second)},
				Sha256:  sha}}}}}}}
	return &core.TypedExtensionConfig{Name: name, TypedConfig: mustAny(w)}
}

// trustedSums returns the sha256 of the product filter modules when trusted.
func trustedSums(trusted bool, mods map[string][]byte) []string {
	if !trusted {
		return nil
	}
	var out []string
	for _, name := range filters.Order() {
		out = append(out, modulefetch.Sum(mods["/"+name+".wasm"]))
	}
	return out
}
