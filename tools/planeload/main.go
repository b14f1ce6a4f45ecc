// Command loadtest measures the control plane at fleet scale, as a
// platform team would see it: a real Consul agent (ACLs on), the plane as
// its own process (bin/meshwarden, one or more replicas), and N simulated
// sidecars, each with its own TLS connection, its Consul token and an ADS
// stream (state of the world or delta), all on loopback:
//
//	go run ./tools/planeload -n 1000 -changes 20
//	go run ./tools/planeload -n 5000 -replicas 2 -delta 0.5
//
// It reports the connect storm (all N streams have their first EDS
// response), Consul change -> EDS received by every proxy (p50/p99 over
// proxies and changes), the plane's resident memory per proxy and its CPU
// per change. The sidecars share the plane's host: 2 cores here, so the
// load generator competes with the plane, which makes the figures
// pessimistic.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/testenv/proc"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
)

type options struct {
	n, replicas, changes, services int
	delta                          float64
	bin, filters, profile, heap    string
	debounce                       time.Duration
	storm                          time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "simulated sidecars (each its own TLS connection and ADS stream)")
	flag.IntVar(&o.replicas, "replicas", 1, "control plane replicas; sidecars are spread over them")
	flag.IntVar(&o.changes, "changes", 20, "Consul health flips to time")
	flag.IntVar(&o.services, "services", 50, "services in the catalog (2 instances each)")
	flag.Float64Var(&o.delta, "delta", 0, "fraction of sidecars using delta xDS (the rest state of the world)")
	flag.StringVar(&o.bin, "bin", "bin/meshwarden", "the meshwarden binary (make cli)")
	flag.StringVar(&o.filters, "filters-dir", "bin/filters", "built filters (make filters)")
	flag.DurationVar(&o.debounce, "debounce", 20*time.Millisecond, "the plane's --debounce")
	flag.DurationVar(&o.storm, "storm-timeout", 2*time.Minute, "bound on the connect storm")
	flag.StringVar(&o.profile, "cpuprofile", "", "write the first plane's CPU profile during the changes to this file")
	flag.StringVar(&o.heap, "heapprofile", "", "write the first plane's heap profile after the connect storm to this file")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		log.Fatal(err)
	}
}

// bench is one run's shared state: Consul, its tokens, the planes.
type bench struct {
	o                    options
	work                 string
	agent                *consulagent.Agent
	mgmt                 *api.Client
	planeTokFile, caFile string
	sideTok, opTok       string
	planes               []*proc.Proc
	xds, admins          []string
	fleet                *fleet
}

func run(ctx context.Context, o options) error {
	work, err := os.MkdirTemp("", "mw-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{o: o, work: work}
	defer b.stop()
	if err := b.startConsul(ctx); err != nil {
		return err
	}
	if err := b.startPlanes(ctx); err != nil {
		return err
	}
	tlsCfg, err := b.planeTLS()
	if err != nil {
		return err
	}
	rss0 := rssKB(b.planes)
	fmt.Printf("plane: %d replica(s), RSS %d MB before any proxy; catalog %d services x 2 instances\n", o.replicas, rss0/1024, o.services)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := b.connectStorm(ctx, tlsCfg, rss0); err != nil {
		return err
	}
	return b.timeChanges(ctx)
}

// stop stops the planes, then Consul.
func (b *bench) stop() {
	for _, p := range b.planes {
		p.Stop(10 * time.Second)
	}
	if b.agent != nil {
		b.agent.Stop()
	}
}

// startConsul starts a Consul agent with ACLs, makes the tokens of the
// plane, the sidecars and the operator, and registers the catalog.
func (b *bench) startConsul(ctx context.Context) error {
	agent, err := consulagent.Start(ctx, consulagent.Options{ManagementToken: consulagent.NewToken()})
	if err != nil {
		return err
	}
	b.agent = agent
	mgmt, err := agent.Client()
	if err != nil {
		return err
	}
	b.mgmt = mgmt
	planeTok, _, err := consulagent.CreateToken(ctx, mgmt, consulagent.TokenSpec{Description: "plane", Rules: auth.PlaneTokenRules})
	if err != nil {
		return err
	}
	if b.sideTok, _, err = consulagent.CreateToken(ctx, mgmt, consulagent.TokenSpec{Description: "payments sidecars", Services: []string{"payments"}}); err != nil {
		return err
	}
	if b.opTok, _, err = consulagent.CreateToken(ctx, mgmt, consulagent.TokenSpec{Description: "loadtest operator", Rules: auth.OperatorTokenRules}); err != nil {
		return err
	}
	b.planeTokFile = filepath.Join(b.work, "plane.token")
	if err := os.WriteFile(b.planeTokFile, []byte(planeTok), 0o600); err != nil {
		return err
	}
	for i := range b.o.services {
		for _, v := range []string{"v1", "v2"} {
			id := fmt.Sprintf("svc%d-%s", i, v)
			if err := mgmt.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: fmt.Sprintf("svc%d", i), Address: "127.0.0.1",
				Port: 20000 + i, Meta: map[string]string{"version": v},
				Check: &api.AgentServiceCheck{CheckID: "check:" + id, TTL: "30m", Status: api.HealthPassing}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// startPlanes starts the replicas on free ports and waits until each is ready.
func (b *bench) startPlanes(ctx context.Context) error {
	for r := range b.o.replicas {
		var addrs [3]string
		for i := range addrs {
			var err error
			if addrs[i], err = proc.FreeAddr(); err != nil {
				return err
			}
		}
		p, err := proc.Start(fmt.Sprintf("plane-%d", r+1), nil, b.o.bin, "controlplane", "--consul", b.agent.Addr(),
			"--xds-address", addrs[0], "--admin-addr", addrs[1], "--public-addr", addrs[2], "--consul-token-file", b.planeTokFile,
			"--filters-dir", b.o.filters, "--debounce", b.o.debounce.String(), "--changelog=", "--register=false")
		if err != nil {
			return err
		}
		b.planes = append(b.planes, p)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = p.WaitHTTP(wctx, "http://"+addrs[2]+"/readyz")
		cancel()
		if err != nil {
			return fmt.Errorf("plane %d: %w\n%s", r+1, err, p.Tail(20))
		}
		b.xds, b.admins = append(b.xds, addrs[0]), append(b.admins, addrs[1])
	}
	return nil
}

// planeTLS writes Consul Connect's roots to a CA file and returns the
// sidecars' TLS configuration for the plane.
func (b *bench) planeTLS() (*tls.Config, error) {
	roots, _, err := b.mgmt.Agent().ConnectCARoots(nil)
	if err != nil {
		return nil, err
	}
	b.caFile = filepath.Join(b.work, "ca.pem")
	var pem strings.Builder
	for _, r := range roots.Roots {
		pem.WriteString(r.RootCertPEM + "\n")
	}
	if err := os.WriteFile(b.caFile, []byte(pem.String()), 0o644); err != nil {
		return nil, err
	}
	return auth.PlaneTLS(b.caFile)
}

// connectStorm connects every sidecar at once and waits for each one's
// first EDS.
func (b *bench) connectStorm(ctx context.Context, tlsCfg *tls.Config, rss0 int64) error {
	o := b.o
	b.fleet = &fleet{updates: make(chan update, o.n*4)}
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr firstError
	for i := range o.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			delta := float64(i) < o.delta*float64(o.n)
			if err := b.fleet.sidecar(ctx, i, b.xds[i%len(b.xds)], tlsCfg, b.sideTok, delta); err != nil {
				failed.Add(1)
				firstErr.set(err)
			}
		}()
	}
	ready := 0
	stormDeadline := time.After(o.storm)
	for ready < o.n-int(failed.Load()) {
		select {
		case u := <-b.fleet.updates:
			if u.first {
				ready++
			}
		case <-stormDeadline:
			return fmt.Errorf("connect storm: %d of %d sidecars have their first EDS after %s (%d failed: %v)", ready, o.n, o.storm, failed.Load(), firstErr.get())
		}
	}
	storm := time.Since(start)
	if failed.Load() > 0 {
		return fmt.Errorf("%d sidecars failed to connect: %v", failed.Load(), firstErr.get())
	}
	time.Sleep(2 * time.Second) // let the plane settle before reading its memory
	rss1 := rssKB(b.planes)
	if o.heap != "" {
		if err := fetchProfile(ctx, b.admins[0], b.caFile, b.opTok, o.heap, 0); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
	}
	fmt.Printf("connect storm: %d sidecars (%d delta) have EDS after %s; plane RSS %d MB (%.1f KB per proxy)\n",
		o.n, int(o.delta*float64(o.n)), storm.Round(time.Millisecond), rss1/1024, float64(rss1-rss0)/float64(o.n))
	return nil
}

// timeChanges flips one instance's health in Consul per change and times
// until every sidecar has the new EDS.
func (b *bench) timeChanges(ctx context.Context) error {
	o := b.o
	var lats []time.Duration
	var last []time.Duration
	profDone := make(chan error, 1)
	if o.profile != "" {
		go func() {
			profDone <- fetchProfile(ctx, b.admins[0], b.caFile, b.opTok, o.profile, time.Duration(o.changes)*400*time.Millisecond)
		}()
	} else {
		profDone <- nil
	}
	cpu0 := cpuTicks(b.planes)
	critical := map[string]bool{}
	for c := range o.changes {
		drain(b.fleet.updates)
		id := fmt.Sprintf("check:svc%d-v2", c%o.services)
		critical[id] = !critical[id]
		st := api.HealthPassing
		if critical[id] {
			st = api.HealthCritical
		}
		t0 := time.Now()
		if err := b.mgmt.Agent().UpdateTTL(id, "loadtest", st); err != nil {
			return err
		}
		seen := make(map[int]bool, o.n)
		timeout := time.After(30 * time.Second)
		for len(seen) < o.n {
			select {
			case u := <-b.fleet.updates:
				if u.at.After(t0) && !seen[u.id] {
					seen[u.id] = true
					lats = append(lats, u.at.Sub(t0))
				}
			case <-timeout:
				return fmt.Errorf("change %d: %d of %d sidecars got it within 30s", c, len(seen), o.n)
			}
		}
		last = append(last, time.Since(t0))
		time.Sleep(200 * time.Millisecond) // health of one instance at a time
	}
	cpu := cpuTicks(b.planes) - cpu0
	if err := <-profDone; err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	sort.Slice(last, func(i, j int) bool { return last[i] < last[j] })
	q := func(d []time.Duration, f float64) time.Duration {
		return d[int(f*float64(len(d)-1))].Round(time.Millisecond)
	}
	fmt.Printf("consul change -> EDS at a sidecar (%d changes x %d sidecars): p50 %s, p99 %s, max %s\n", o.changes, o.n, q(lats, .5), q(lats, .99), q(lats, 1))
	fmt.Printf("consul change -> EDS at the last sidecar: p50 %s, p99 %s\n", q(last, .5), q(last, .99))
	fmt.Printf("plane CPU per change: %.0f ms (%.1f µs per proxy push); RSS %d MB\n",
		float64(cpu)*10/float64(o.changes), float64(cpu)*10000/float64(o.changes*o.n), rssKB(b.planes)/1024)
	return nil
}

// firstError keeps the first of errors reported from several goroutines.
// (atomic.Value panics when errors of different types are stored.)
type firstError struct{ p atomic.Pointer[error] }

func (f *firstError) set(err error) { f.p.CompareAndSwap(nil, &err) }

func (f *firstError) get() error {
	if p := f.p.Load(); p != nil {
		return *p
	}
	return nil
}

type update struct {
	id    int
	first bool
	at    time.Time
}

type fleet struct{ updates chan update }

// sidecar keeps one simulated sidecar's stream open, ACKing every response
// and reporting each EDS response.
func (f *fleet) sidecar(ctx context.Context, i int, addr string, tlsCfg *tls.Config, token string, delta bool) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg.Clone())))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-consul-token", token)
	node := &corev3.Node{Id: "sim-" + strconv.Itoa(i), Cluster: "payments"}
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	first := true
	report := func() {
		select {
		case f.updates <- update{id: i, first: first, at: time.Now()}:
		default:
		}
		first = false
	}
	if delta {
		st, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		return ackLoop(ctx, st.Send, st.Recv,
			func(typ string) *discovery.DeltaDiscoveryRequest {
				return &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: typ, ResourceNamesSubscribe: []string{"*"}}
			},
			func(r *discovery.DeltaDiscoveryResponse) (string, *discovery.DeltaDiscoveryRequest) {
				return r.GetTypeUrl(), &discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}
			}, report)
	}
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	return ackLoop(ctx, st.Send, st.Recv,
		func(typ string) *discovery.DiscoveryRequest {
			return &discovery.DiscoveryRequest{Node: node, TypeUrl: typ}
		},
		func(r *discovery.DiscoveryResponse) (string, *discovery.DiscoveryRequest) {
			return r.GetTypeUrl(), &discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}
		}, report)
}

// ackLoop subscribes to CDS and EDS with subscribe, then answers every
// response with its ACK (ack gives the response's type and the request),
// calling report on each EDS response, until the stream ends. It serves
// SotW and delta streams alike.
func ackLoop[Req, Resp any](ctx context.Context, send func(*Req) error, recv func() (*Resp, error),
	subscribe func(typeURL string) *Req, ack func(*Resp) (string, *Req), report func()) error {
	for _, typ := range []string{resource.ClusterType, resource.EndpointType} {
		if err := send(subscribe(typ)); err != nil {
			return err
		}
	}
	for {
		r, err := recv()
		if err != nil {
			return ignoreEnd(ctx, err)
		}
		typ, req := ack(r)
		if typ == resource.EndpointType {
			report()
		}
		if err := send(req); err != nil {
			return ignoreEnd(ctx, err)
		}
	}
}

func ignoreEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func drain(ch chan update) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// rssKB sums the planes' resident memory (VmRSS, KB).
func rssKB(ps []*proc.Proc) int64 {
	var sum int64
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				sum += v
			}
		}
	}
	return sum
}

// cpuTicks sums the planes' user+system CPU in clock ticks (1/100 s).
func cpuTicks(ps []*proc.Proc) int64 {
	var sum int64
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 13 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			k, _ := strconv.ParseInt(f[12], 10, 64)
			sum += u + k
		}
	}
	return sum
}

// fetchProfile saves the plane's CPU profile over d, or its heap profile
// when d is 0.
func fetchProfile(ctx context.Context, admin, caFile, token, file string, d time.Duration) error {
	hc, err := auth.ClientOptions{CAFile: caFile, Token: token}.HTTPClient()
	if err != nil {
		return err
	}
	hc.Timeout = d + time.Minute
	url := fmt.Sprintf("https://%s/debug/pprof/profile?seconds=%d", admin, max(1, int(d.Seconds())))
	if d == 0 {
		url = fmt.Sprintf("https://%s/debug/pprof/heap?gc=1", admin)
	}
	resp, err := httpget.OK(ctx, hc, url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer out.Close()
	_, err = io.Copy(out, resp.Body)
	return err
}
