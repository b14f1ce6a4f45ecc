package controlplane

import (
	"bytes"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestPremarshaledIsTheSameWire: a premarshaled resource encodes to exactly
// the bytes of the real message (so proxies receive the same thing), keeps
// its name for go-control-plane's indexes, is marshalled once however many
// snapshots share it, and a snapshot of them keeps the version.
func TestPremarshaledIsTheSameWire(t *testing.T) {
	cl := &clusterv3.Cluster{Name: "payments", ConnectTimeout: durationpb.New(1e9),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "payments", Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1",
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9000}}}}}}}}}}}
	m := newMarshalMemo(nil)
	for _, r := range []types.Resource{cl, cla} {
		w, err := m.wrap(r)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := cache.MarshalResource(r)
		got, err := cache.MarshalResource(w)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%T: premarshaled bytes differ (%v)", r, err)
		}
		if cache.GetResourceName(w) != cache.GetResourceName(r) {
			t.Fatalf("%T: name %q, want %q", r, cache.GetResourceName(w), cache.GetResourceName(r))
		}
		// What a proxy decodes from a response is the real message.
		a := &anypb.Any{Value: got}
		back := proto.Clone(r)
		proto.Reset(back)
		if err := proto.Unmarshal(a.Value, back); err != nil || !proto.Equal(back, r) {
			t.Fatalf("%T: round trip: %v", r, err)
		}
		if again, _ := m.wrap(r); again != w {
			t.Fatalf("%T: wrapped twice", r)
		}
	}
	next := newMarshalMemo(m)
	if w, _ := next.wrap(cl); w != m.cur[cl] {
		t.Fatal("an unchanged resource was marshalled again in the next build")
	}
	snap, err := next.publishable("v1", map[resource.Type][]types.Resource{resource.ClusterType: {cl}, resource.EndpointType: {cla}})
	if err != nil || snap.GetVersion(resource.ClusterType) != "v1" || snap.GetResources(resource.EndpointType)["payments"] == nil {
		t.Fatalf("snapshot: %v %+v", err, snap)
	}
}
