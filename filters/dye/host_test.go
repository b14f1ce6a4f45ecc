//go:build !wasip1

package dye_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/ir"
)

// guests builds ./wasm once per test binary and compiles it once.
var guests kittest.Guests

func TestMain(m *testing.M) { guests.Main(m) }

// hostPlugin starts the dye filter built as .wasm in the gateway's host.
func hostPlugin(tb testing.TB, config []byte, logs *kittest.LogSink) (*wasmhost.Plugin, error) {
	tb.Helper()
	rt, mod := guests.Compiled(tb, "./wasm")
	return kittest.Start(tb, rt, mod, wasmhost.PluginConfig{Name: "dye", Configuration: config}, logs)
}

func readExample(tb testing.TB, name string) []byte {
	tb.Helper()
	return kittest.ReadFile(tb, filepath.Join("testdata", name))
}

// TestHostIngressExample runs the README's ingress example as .wasm in the
// gateway's host.
func TestHostIngressExample(t *testing.T) {
	p, err := hostPlugin(t, readExample(t, "example-ingress.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		info    wasmhost.StreamInfo
		headers []string
		lane    string
		tenant  string
	}{
		{"beta header", wasmhost.StreamInfo{}, []string{":method", "GET", ":path", "/", "x-beta", "1"}, "beta", ""},
		{"spoofed dye from the internet", wasmhost.StreamInfo{SourceAddress: "203.0.113.9:4000"}, []string{":method", "GET", ":path", "/", "x-mw-dye", "ops", "baggage", "mw-dye=ops,k=v"}, "stable", ""},
		{"trusted mesh peer keeps its dye", wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/mesh/sa/gateway"}, []string{":method", "GET", ":path", "/", "x-mw-dye", "canary"}, "canary", ""},
		{"trusted CIDR keeps the baggage dye", wasmhost.StreamInfo{SourceAddress: "10.1.4.4:5000"}, []string{":method", "GET", ":path", "/", "baggage", "mw-dye=canary"}, "canary", ""},
		{"ops peer identity", wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/ops/sa/cli"}, []string{":method", "GET", ":path", "/"}, "ops", ""},
		{"retail tenant rule", wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/retail/sa/web"}, []string{":method", "POST", ":path", "/v2/pay"}, "v2", "retail"},
		{"other tenant cannot reach v2", wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/corp/sa/web"}, []string{":method", "POST", ":path", "/v2/pay", "x-mw-tenant", "retail"}, "stable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := wasmhost.NewHeaders(tt.headers...)
			s, err := p.NewStream(context.Background(), tt.info)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if res := s.OnRequestHeaders(h, true); res.Action != wasmhost.Continue {
				t.Fatalf("action = %v err %v", res.Action, res.Err)
			}
			if v, _ := h.Get(dyeing.Header); v != tt.lane {
				t.Errorf("lane = %q, want %q (headers %v)", v, tt.lane, h.Pairs)
			}
			if v, _ := h.Get(dyeing.TenantHeader); v != tt.tenant {
				t.Errorf("tenant = %q, want %q", v, tt.tenant)
			}
			if bg, _ := h.Get("baggage"); !strings.Contains(bg, "mw-dye="+tt.lane) {
				t.Errorf("baggage = %q lacks mw-dye=%s", bg, tt.lane)
			}
		})
	}
}

// TestHostEgressExample runs the README's egress example: an application
// that forwards only the W3C baggage gets the lane header back.
func TestHostEgressExample(t *testing.T) {
	p, err := hostPlugin(t, readExample(t, "example-egress.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := wasmhost.NewHeaders(":method", "GET", ":path", "/next-hop", "baggage", "userId=7,mw-dye=canary")
	s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.OnRequestHeaders(h, true)
	if v, _ := h.Get(dyeing.Header); v != "canary" {
		t.Fatalf("egress lane header = %q, want canary restored from baggage", v)
	}
}

// TestHostRouteSeesDye shows that the route chosen after the filter chain
// sees the dye: the dye is on the request headers the router reads once
// the chain returns Continue, so a lane route (ir.LaneRule) picks the lane's
// subset.
func TestHostRouteSeesDye(t *testing.T) {
	p, err := hostPlugin(t, readExample(t, "example-ingress.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	route := ir.Route{
		Service:       "accounts",
		Lanes:         []ir.LaneRule{{Lane: "beta", Subset: "v2"}, {Lane: "canary", Subset: "canary"}},
		DefaultSubset: "v1",
	}
	pick := func(h *wasmhost.Headers) string {
		lane, _ := h.Get(dyeing.Header)
		for _, l := range route.Lanes {
			if l.Lane == lane {
				return l.Subset
			}
		}
		return route.DefaultSubset
	}
	chain := wasmhost.NewChain(p)
	for _, tc := range []struct {
		hdr    []string
		subset string
	}{
		{[]string{":method", "GET", ":path", "/", "x-beta", "1"}, "v2"},
		{[]string{":method", "GET", ":path", "/", "x-mw-dye", "canary"}, "v1"}, // spoofed: stripped
	} {
		h := wasmhost.NewHeaders(tc.hdr...)
		cs, err := chain.NewStream(context.Background(), wasmhost.StreamInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if res := cs.OnRequestHeaders(h, true); res.Action != wasmhost.Continue {
			t.Fatalf("chain action %v", res.Action)
		}
		if got := pick(h); got != tc.subset {
			t.Errorf("headers %v routed to %q, want %q", tc.hdr, got, tc.subset)
		}
		cs.Close()
	}
}

// TestHostRefusesBadConfig checks that a bad configuration stops the plugin
// with a log line naming the field.
func TestHostRefusesBadConfig(t *testing.T) {
	kittest.Refuses(t, "rules[0].lane", func(logs *kittest.LogSink) error {
		_, err := hostPlugin(t, []byte(`{"rules":[{"lane":"Canary"}]}`), logs)
		return err
	})
}

func BenchmarkHostDye(b *testing.B) {
	p, err := hostPlugin(b, readExample(b, "example-ingress.json"), nil)
	if err != nil {
		b.Fatal(err)
	}
	info := wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/mesh/sa/gateway", SourceAddress: "10.1.2.3:4000"}
	b.ReportAllocs()
	for b.Loop() {
		h := wasmhost.NewHeaders(":method", "GET", ":path", "/v1/accounts/7", "x-user-id", "u-42", "baggage", "k=v")
		s, err := p.NewStream(context.Background(), info)
		if err != nil {
			b.Fatal(err)
		}
		s.OnRequestHeaders(h, true)
		s.Close()
	}
}

// BenchmarkHostDyeMinimal is the fixed cost: an empty configuration (no
// rules, no trust lists) on a request without baggage.
func BenchmarkHostDyeMinimal(b *testing.B) {
	p, err := hostPlugin(b, []byte(`{"defaultLane":"stable"}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		h := wasmhost.NewHeaders(":method", "GET", ":path", "/v1/accounts/7")
		s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{})
		if err != nil {
			b.Fatal(err)
		}
		s.OnRequestHeaders(h, true)
		s.Close()
	}
}
