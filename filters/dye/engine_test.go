package dye

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig"
	"github.com/meshwarden/meshwarden/internal/dyeing"
)

// mapReq is a Request over a map, for the engine's table tests.
type mapReq map[string]string

func (m mapReq) Header(n string) (string, bool) { v, ok := m[n]; return v, ok }
func (m mapReq) SetHeader(n, v string)          { m[n] = v }
func (m mapReq) RemoveHeader(n string)          { delete(m, n) }

var _ Request = mapReq(nil)

const testConfig = `{
  "rules": [
    {"name": "beta-header", "match": {"headers": [{"name": "x-beta", "exact": "1"}]}, "lane": "beta"},
    {"name": "cookie", "match": {"cookies": [{"name": "lane", "exact": "blue"}]}, "lane": "blue"},
    {"name": "query", "match": {"queryParams": [{"name": "canary", "exact": "yes"}]}, "lane": "canary"},
    {"name": "ops", "match": {"peerIdentities": ["spiffe://bank.example/ns/ops/*"]}, "lane": "ops"},
    {"name": "retail-only", "tenants": ["retail"], "match": {"pathPrefix": "/v2/", "methods": ["POST"]}, "lane": "v2"},
    {"name": "split", "match": {"pathPrefix": "/split"}, "split": [{"lane": "canary", "weight": 10}, {"weight": 90}], "stickyKey": {"header": "x-user-id"}}
  ],
  "defaultLane": "stable",
  "trust": {"peerIdentities": ["spiffe://bank.example/ns/mesh/*"], "sourceCIDRs": ["10.1.0.0/16"]},
  "tenant": {"identities": [{"peer": "spiffe://bank.example/ns/retail/*", "tenant": "retail"}]},
  "lanes": [{"lane": "v2", "tenants": ["retail"]}, {"lane": "private", "tenants": ["corp"]}]
}`

func TestEngineApply(t *testing.T) {
	cfg, err := dyeconfig.ParseConfig([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	const (
		trustedID = "spiffe://bank.example/ns/mesh/sa/gw"
		retailID  = "spiffe://bank.example/ns/retail/sa/web"
		otherID   = "spiffe://evil.example/ns/x/sa/y"
	)
	tests := []struct {
		name        string
		req         mapReq
		peer        Peer
		lane, by    string
		tenant      string
		stripped    bool
		wantBaggage string // "" means no baggage header
	}{
		{"header rule", mapReq{":path": "/", "x-beta": "1"}, Peer{}, "beta", "rule:beta-header", "", false, "mw-dye=beta"},
		{"cookie rule", mapReq{":path": "/", "cookie": "a=b; lane=blue"}, Peer{}, "blue", "rule:cookie", "", false, "mw-dye=blue"},
		{"query rule", mapReq{":path": "/x?a=1&canary=yes"}, Peer{}, "canary", "rule:query", "", false, "mw-dye=canary"},
		{"peer identity rule", mapReq{":path": "/"}, Peer{Identity: "spiffe://bank.example/ns/ops/sa/cli"}, "ops", "rule:ops", "", false, "mw-dye=ops"},
		{"first match wins", mapReq{":path": "/?canary=yes", "x-beta": "1"}, Peer{}, "beta", "rule:beta-header", "", false, "mw-dye=beta"},
		{"default lane", mapReq{":path": "/"}, Peer{}, "stable", "default", "", false, "mw-dye=stable"},
		{"untrusted dye stripped, rules decide", mapReq{":path": "/", "x-mw-dye": "canary", "baggage": "mw-dye=canary,k=v"}, Peer{Identity: otherID}, "stable", "default", "", true, "mw-dye=stable,k=v"},
		{"trusted identity keeps dye", mapReq{":path": "/", "x-mw-dye": "canary"}, Peer{Identity: trustedID}, "canary", "header", "", false, "mw-dye=canary"},
		{"trusted CIDR keeps dye", mapReq{":path": "/", "x-mw-dye": "canary"}, Peer{Address: "10.1.2.3:5555"}, "canary", "header", "", false, "mw-dye=canary"},
		{"CIDR outside is untrusted", mapReq{":path": "/", "x-mw-dye": "canary"}, Peer{Address: "10.2.2.3:5555"}, "stable", "default", "", true, "mw-dye=stable"},
		{"trusted baggage restores header", mapReq{":path": "/", "baggage": "k=v,mw-dye=canary"}, Peer{Identity: trustedID}, "canary", "baggage", "", false, "k=v,mw-dye=canary"},
		{"invalid carried lane ignored", mapReq{":path": "/", "x-mw-dye": "Bad Lane"}, Peer{Identity: trustedID}, "stable", "default", "", false, "mw-dye=stable"},
		{"tenant-scoped rule for its tenant", mapReq{":path": "/v2/pay", ":method": "POST"}, Peer{Identity: retailID}, "v2", "rule:retail-only", "retail", false, "mw-dye=v2,mw-tenant=retail"},
		{"tenant-scoped rule for another tenant", mapReq{":path": "/v2/pay", ":method": "POST", "x-mw-tenant": "retail"}, Peer{Identity: otherID}, "stable", "default", "", false, "mw-dye=stable"},
		{"tenant header trusted from trusted peer", mapReq{":path": "/v2/pay", ":method": "POST", "x-mw-tenant": "retail"}, Peer{Identity: trustedID}, "v2", "rule:retail-only", "retail", false, "mw-dye=v2,mw-tenant=retail"},
		{"scoped lane from trusted peer, wrong tenant", mapReq{":path": "/", "x-mw-dye": "private", "x-mw-tenant": "retail"}, Peer{Identity: trustedID}, "stable", "default", "retail", false, "mw-dye=stable,mw-tenant=retail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Apply(tt.req, tt.peer, func() uint32 { return 0 })
			if d.Lane != tt.lane || d.By != tt.by || d.Tenant != tt.tenant || d.Stripped != tt.stripped {
				t.Errorf("decision = %+v, want lane %q by %q tenant %q stripped %v", d, tt.lane, tt.by, tt.tenant, tt.stripped)
			}
			if got := tt.req[dyeing.Header]; got != tt.lane {
				t.Errorf("lane header = %q, want %q", got, tt.lane)
			}
			if got := tt.req["x-mw-tenant"]; got != tt.tenant {
				t.Errorf("tenant header = %q, want %q", got, tt.tenant)
			}
			if got := tt.req["baggage"]; got != tt.wantBaggage {
				t.Errorf("baggage = %q, want %q", got, tt.wantBaggage)
			}
		})
	}
}

func TestStickySplit(t *testing.T) {
	cfg, err := dyeconfig.ParseConfig([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	canary := 0
	const users = 2000
	for u := 0; u < users; u++ {
		id := "user-" + itoa(u)
		var first string
		for rep := 0; rep < 3; rep++ {
			req := mapReq{":path": "/split/x", "x-user-id": id}
			// A random source that changes every call must not move a user.
			d := e.Apply(req, Peer{}, func() uint32 { return uint32(rep * 37) })
			if rep == 0 {
				first = d.Lane
			} else if d.Lane != first {
				t.Fatalf("user %s moved from %q to %q", id, first, d.Lane)
			}
		}
		if first == "canary" {
			canary++
		} else if first != "stable" {
			t.Fatalf("user %s got lane %q, want canary or stable (the default for the empty arm)", id, first)
		}
	}
	if canary < users*6/100 || canary > users*14/100 {
		t.Errorf("canary share = %d/%d, want about 10%%", canary, users)
	}
	if StickyBucket("split", "user-1") != StickyBucket("split", "user-1") || StickyBucket("a", "k") == StickyBucket("b", "k") && StickyBucket("a", "k2") == StickyBucket("b", "k2") && StickyBucket("a", "k3") == StickyBucket("b", "k3") {
		t.Error("StickyBucket is not stable, or ignores the rule name")
	}
	// Without the sticky key the arm comes from rnd.
	req := mapReq{":path": "/split"}
	if d := e.Apply(req, Peer{}, func() uint32 { return 5 }); d.Lane != "canary" {
		t.Errorf("rnd 5 -> %q, want canary", d.Lane)
	}
	req = mapReq{":path": "/split"}
	if d := e.Apply(req, Peer{}, func() uint32 { return 50 }); d.Lane != "stable" {
		t.Errorf("rnd 50 -> %q, want stable", d.Lane)
	}
}

func TestEgressRestoresLaneFromBaggage(t *testing.T) {
	cfg, err := dyeconfig.ParseConfig([]byte(`{"mode":"egress"}`))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	tests := []struct {
		name string
		req  mapReq
		lane string
	}{
		{"baggage only", mapReq{":path": "/", "baggage": "userId=7,mw-dye=canary;ttl=1"}, "canary"},
		{"header kept", mapReq{":path": "/", "x-mw-dye": "blue"}, "blue"},
		{"nothing", mapReq{":path": "/"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Apply(tt.req, Peer{}, nil)
			if d.Lane != tt.lane || tt.req[dyeing.Header] != tt.lane {
				t.Errorf("lane = %q header %q, want %q", d.Lane, tt.req[dyeing.Header], tt.lane)
			}
			if tt.lane != "" && !strings.Contains(tt.req["baggage"], "mw-dye="+tt.lane) {
				t.Errorf("baggage = %q lost the lane", tt.req["baggage"])
			}
		})
	}
}

func BenchmarkEngineApply(b *testing.B) {
	cfg, err := dyeconfig.ParseConfig([]byte(testConfig))
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(cfg)
	b.ReportAllocs()
	for b.Loop() {
		req := mapReq{":path": "/split/x", ":method": "GET", "x-user-id": "u1", "baggage": "k=v"}
		e.Apply(req, Peer{Identity: "spiffe://bank.example/ns/mesh/sa/gw"}, nil)
	}
}

func TestStickyCookie(t *testing.T) {
	cfg, err := dyeconfig.ParseConfig([]byte(`{"rules":[{"name":"c","split":[{"lane":"canary","weight":50},{"lane":"blue","weight":50}],"stickyKey":{"cookie":"uid"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	for _, uid := range []string{"a", "b", "c", "d", "e"} {
		want := "blue"
		if StickyBucket("c", uid) < 50 {
			want = "canary"
		}
		for _, rnd := range []uint32{0, 99} {
			req := mapReq{":path": "/", "cookie": "theme=dark; uid=" + uid}
			if d := e.Apply(req, Peer{}, func() uint32 { return rnd }); d.Lane != want {
				t.Errorf("uid %s (rnd %d): lane %q, want %q", uid, rnd, d.Lane, want)
			}
		}
	}
}
