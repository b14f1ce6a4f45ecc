package xdsclient

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	typeA = "type.googleapis.com/google.protobuf.StringValue"
	typeB = "type.googleapis.com/google.protobuf.BytesValue"
)

// scriptedADS answers each request on the stream from a script and records
// every request.
type scriptedADS struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	mu   sync.Mutex
	reqs []*discovery.DiscoveryRequest
	resp chan *discovery.DiscoveryResponse
}

func (s *scriptedADS) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.reqs = append(s.reqs, r)
			s.mu.Unlock()
		}
	}()
	for {
		select {
		case r := <-s.resp:
			if err := st.Send(r); err != nil {
				return err
			}
		case <-st.Context().Done():
			return nil
		}
	}
}

func (s *scriptedADS) requests() []*discovery.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discovery.DiscoveryRequest(nil), s.reqs...)
}

// handler accepts type A unless reject is set, and wants B names after A.
type handler struct {
	mu     sync.Mutex
	reject error
	gotA   bool
}

func (h *handler) OnResources(_ context.Context, typeURL, _ string, _ []*anypb.Any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if typeURL == typeA {
		if h.reject != nil {
			return h.reject
		}
		h.gotA = true
	}
	return nil
}

func (h *handler) Subscriptions() map[string][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[string][]string{typeA: nil}
	if h.gotA {
		m[typeB] = []string{"b1"}
	}
	return m
}

func TestProtocol(t *testing.T) {
	srv := &scriptedADS{resp: make(chan *discovery.DiscoveryResponse, 4)}
	gs := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	h := &handler{}
	c, err := New(Config{Target: lis.Addr().String(), Node: &core.Node{Id: "n1"},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}}, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait := func(what string, n int) []*discovery.DiscoveryRequest {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if r := srv.requests(); len(r) >= n {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; requests: %v", what, srv.requests())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	res, _ := anypb.New(wrapperspb.String("x"))

	tests := []struct {
		name   string
		reject error
		resp   *discovery.DiscoveryResponse
		check  func(t *testing.T, r []*discovery.DiscoveryRequest)
	}{
		{name: "initial wildcard subscription", check: func(t *testing.T, r []*discovery.DiscoveryRequest) {
			if r[0].GetTypeUrl() != typeA || len(r[0].GetResourceNames()) != 0 || r[0].GetNode().GetId() != "n1" {
				t.Fatalf("first request %v, want a wildcard for A with the node", r[0])
			}
		}},
		{name: "NACK keeps the previous version and says why", reject: errors.New("bad thing"),
			resp: &discovery.DiscoveryResponse{TypeUrl: typeA, VersionInfo: "v1", Nonce: "n-1", Resources: []*anypb.Any{res}},
			check: func(t *testing.T, r []*discovery.DiscoveryRequest) {
				last := r[len(r)-1]
				if last.GetErrorDetail().GetMessage() != "bad thing" || last.GetVersionInfo() != "" || last.GetResponseNonce() != "n-1" {
					t.Fatalf("NACK = %v", last)
				}
			}},
		{name: "ACK carries version and nonce, then the dependent type is requested",
			resp: &discovery.DiscoveryResponse{TypeUrl: typeA, VersionInfo: "v2", Nonce: "n-2", Resources: []*anypb.Any{res}},
			check: func(t *testing.T, r []*discovery.DiscoveryRequest) {
				var ack, sub *discovery.DiscoveryRequest
				for _, q := range r {
					if q.GetTypeUrl() == typeA && q.GetResponseNonce() == "n-2" {
						ack = q
					}
					if q.GetTypeUrl() == typeB {
						sub = q
					}
				}
				if ack == nil || ack.GetVersionInfo() != "v2" || ack.GetErrorDetail() != nil {
					t.Fatalf("ACK = %v", ack)
				}
				if sub == nil || len(sub.GetResourceNames()) != 1 || sub.GetResourceNames()[0] != "b1" {
					t.Fatalf("B subscription = %v", sub)
				}
			}},
	}
	n := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.mu.Lock()
			h.reject = tc.reject
			h.mu.Unlock()
			want := n + 1
			if tc.resp != nil {
				srv.resp <- tc.resp
				if tc.reject == nil {
					want = n + 2 // ACK and the new subscription
				}
			}
			r := wait(tc.name, want)
			n = len(r)
			tc.check(t, r)
		})
	}
	if !c.Connected() {
		t.Fatal("Connected() is false on an open stream")
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no target", Config{Node: &core.Node{Id: "x"}}},
		{"no node id", Config{Target: "127.0.0.1:1", Node: &core.Node{}}},
		{"no credentials", Config{Target: "127.0.0.1:1", Node: &core.Node{Id: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, &handler{}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
