package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/controlplane/planetest"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/ir"
)

// plane is a running control plane on a real Consul agent for one test.
type plane struct {
	s      *Server
	agent  *consulagent.Agent
	consul *api.Client
	addr   string
	admin  *httptest.Server
	// stop stops the plane (also at the test's end).
	stop func()
}

// jsonLoader is the test's policy loader: each file is an ir.PolicySet in
// JSON, and the sets are concatenated. (policies.LoadFiles is the real one.)
func jsonLoader(files map[string][]byte, _ *ir.Catalog) (*ir.PolicySet, error) {
	out := &ir.PolicySet{}
	for name, b := range files {
		var ps ir.PolicySet
		if err := json.Unmarshal(b, &ps); err != nil {
			return nil, errors.New(name + ": " + err.Error())
		}
		out.Routes = append(out.Routes, ps.Routes...)
		out.Filters = append(out.Filters, ps.Filters...)
		out.Sources = append(out.Sources, name)
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

func startPlane(t testing.TB, mutate func(*Config)) *plane {
	t.Helper()
	agent, client := consultest.Start(t)
	p := startPlaneOn(t, client, mutate)
	p.agent = agent
	return p
}

// startPlaneOn starts a plane on an agent already running (a restart).
func startPlaneOn(t testing.TB, client *api.Client, mutate func(*Config)) *plane {
	t.Helper()
	return startPlaneCtx(t, t.Context(), client, mutate)
}

// startPlaneCtx is startPlaneOn with the context given to NewWithContext.
func startPlaneCtx(t testing.TB, newCtx context.Context, client *api.Client, mutate func(*Config)) *plane {
	t.Helper()
	cfg := Config{
		Consul:       client,
		Debounce:     5 * time.Millisecond,
		LoadPolicies: jsonLoader,
		Translate:    translate.Options{ModuleBaseURL: "http://127.0.0.1:1/modules/"},
		Watch:        consulOpts(),
		// These tests are about translation and publication; auth_test.go
		// runs the plane with authentication on a Consul with ACLs on.
		InsecureNoAuth: true,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := NewWithContext(newCtx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, _, stopPlane := planetest.ServeStoppable(t, s)
	admin := httptest.NewServer(s.AdminHandler(true))
	stop := func() {
		admin.Close()
		stopPlane()
	}
	p := &plane{s: s, consul: client, addr: lis.Addr().String(), admin: admin, stop: sync.OnceFunc(stop)}
	t.Cleanup(p.stop)
	return p
}

func consulOpts() consulwatch.Options {
	return consulwatch.Options{WaitTime: 30 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
}

// adsClient is a minimal SotW ADS client: it subscribes to every type and
// ACKs each response unless nack says otherwise.
type adsClient struct {
	t      testing.TB
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	mu     sync.Mutex
	last   map[string]*discovery.DiscoveryResponse // latest per type
	acked  map[string]string                       // accepted version per type
	nack   func(*discovery.DiscoveryResponse) string
	recv   chan *discovery.DiscoveryResponse
}

var adsTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.ExtensionConfigType, resource.SecretType}

func dialADS(t testing.TB, addr, id, cluster string, meta map[string]any) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); _ = conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(meta)
	if err != nil {
		t.Fatal(err)
	}
	c := &adsClient{t: t, stream: stream, last: map[string]*discovery.DiscoveryResponse{},
		acked: map[string]string{}, recv: make(chan *discovery.DiscoveryResponse, 256)}
	node := &corev3.Node{Id: id, Cluster: cluster, Metadata: md}
	for i, typ := range adsTypes {
		req := &discovery.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	go c.loop()
	return c
}

func (c *adsClient) setNack(f func(*discovery.DiscoveryResponse) string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nack = f
}

func (c *adsClient) loop() {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			close(c.recv)
			return
		}
		c.mu.Lock()
		req := &discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		reason := ""
		if c.nack != nil {
			reason = c.nack(resp)
		}
		if reason != "" {
			req.VersionInfo = c.acked[resp.GetTypeUrl()]
			req.ErrorDetail = &status.Status{Code: 3, Message: reason}
		} else {
			req.VersionInfo = resp.GetVersionInfo()
			c.acked[resp.GetTypeUrl()] = resp.GetVersionInfo()
			c.last[resp.GetTypeUrl()] = resp
		}
		c.mu.Unlock()
		if err := c.stream.Send(req); err != nil {
			close(c.recv)
			return
		}
		c.recv <- resp
	}
}

// waitFor waits until the accepted state satisfies ok.
func (c *adsClient) waitFor(what string, ok func(c *adsClient) bool) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		good := ok(c)
		c.mu.Unlock()
		if good {
			return
		}
		select {
		case _, open := <-c.recv:
			if !open {
				c.t.Fatalf("ADS stream closed while waiting for %s", what)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	c.t.Fatalf("timed out waiting for %s", what)
}

// endpoints returns the accepted endpoints of cluster as "addr:port".
func (c *adsClient) endpoints(cluster string) ([]string, bool) {
	resp := c.last[resource.EndpointType]
	if resp == nil {
		return nil, false
	}
	for _, a := range resp.GetResources() {
		var la endpointv3.ClusterLoadAssignment
		if err := a.UnmarshalTo(&la); err != nil {
			c.t.Fatal(err)
		}
		if la.GetClusterName() != cluster {
			continue
		}
		var out []string
		for _, l := range la.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, net.JoinHostPort(sa.GetAddress(), itoa(sa.GetPortValue())))
			}
		}
		return out, true
	}
	return nil, false
}

func (c *adsClient) clusterNames() map[string]bool {
	out := map[string]bool{}
	for _, a := range c.last[resource.ClusterType].GetResources() {
		var cl clusterv3.Cluster
		if err := a.UnmarshalTo(&cl); err != nil {
			c.t.Fatal(err)
		}
		out[cl.GetName()] = true
	}
	return out
}

func (c *adsClient) vhosts(route string) map[string]bool {
	out := map[string]bool{}
	for _, a := range c.last[resource.RouteType].GetResources() {
		var rc routev3.RouteConfiguration
		if err := a.UnmarshalTo(&rc); err != nil {
			c.t.Fatal(err)
		}
		if rc.GetName() != route {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			out[vh.GetName()] = true
		}
	}
	return out
}

func itoa(p uint32) string { return strconv.FormatUint(uint64(p), 10) }
