package translate

import (
	"testing"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/meshwarden/meshwarden/ir"
)

func TestNodeFromMetadata(t *testing.T) {
	tests := []struct {
		name    string
		cluster string
		meta    map[string]string
		want    Node
		wantErr bool
	}{
		{"sidecar defaults", "web", nil, Node{ID: "n", Service: "web"}, false},
		{"sidecar ports", "web", map[string]string{"inbound_port": "21001", "local_app_port": "9000"}, Node{ID: "n", Service: "web", InboundPort: 21001, LocalAppPort: 9000}, false},
		{"gateway", meshnames.GatewayNodeCluster, map[string]string{"listen_port": "8443"}, Node{ID: "n", Gateway: true, ListenPort: 8443}, false},
		{"bad port", "web", map[string]string{"outbound_port": "70000"}, Node{}, true},
		{"zero port", "web", map[string]string{"inbound_port": "0"}, Node{}, true},
		{"no cluster", "", nil, Node{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NodeFromMetadata("n", tc.cluster, tc.meta)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRolloutSplitsNodes(t *testing.T) {
	f := ir.Filter{Name: "dye", SHA256: "new", PreviousSHA256: "old", RolloutPercent: 30}
	counts := map[string]int{}
	for i := range 2000 {
		counts[moduleFor(f, "node-"+itoa(i))]++
	}
	if counts["new"] < 450 || counts["new"] > 750 {
		t.Fatalf("30%% rollout gave %v", counts)
	}
	for _, tc := range []struct {
		name string
		f    ir.Filter
		want string
	}{
		{"no previous", ir.Filter{SHA256: "new", RolloutPercent: 10}, "new"},
		{"complete", ir.Filter{SHA256: "new", PreviousSHA256: "old", RolloutPercent: 100}, "new"},
		{"not started", ir.Filter{SHA256: "new", PreviousSHA256: "old", RolloutPercent: 0}, "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := moduleFor(tc.f, "any"); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	if moduleFor(f, "stable") != moduleFor(f, "stable") {
		t.Fatal("bucket is not stable")
	}
}

func TestVersionIsContentHash(t *testing.T) {
	cat := &ir.Catalog{Services: map[string]*ir.Service{"echo": {Name: "echo", Instances: []ir.Instance{{ID: "1", Address: "127.0.0.1", Port: 1, Healthy: true}}}}}
	n := Node{ID: "a", Service: "web"}
	v := func(cat *ir.Catalog) string {
		s, err := Build(cat, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := s.ForNode(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Version
	}
	v1 := v(cat)
	cat.Index = 99 // not content
	if v(cat) != v1 {
		t.Fatal("version changed without a content change")
	}
	cat.Services["echo"].Instances[0].Healthy = false
	if v(cat) == v1 {
		t.Fatal("version did not change with the endpoints")
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

// TestCacheMatchesFreshBuild changes one service between cached builds and
// checks the cached result equals a fresh translation, and that unchanged
// services were reused.
func TestCacheMatchesFreshBuild(t *testing.T) {
	cat, ps := bigCatalog(50, 3)
	opts := Options{ModuleBaseURL: "http://127.0.0.1:18001/modules/"}
	c := NewCache()
	dump := func(s *Shared) string {
		snap, err := s.ForNode(Node{ID: "gw", Gateway: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		y, err := snap.YAML()
		if err != nil {
			t.Fatal(err)
		}
		return string(y)
	}
	first, err := BuildCached(c, cat, ps, opts)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"health flip", func() { cat.Services["svc-00007"].Instances[1].Healthy = false }},
		{"meta change in a routed service", func() { cat.Services["svc-00010"].Instances[0].Meta["version"] = "v2" }},
		{"service removed", func() { delete(cat.Services, "svc-00020") }},
		{"route policy change", func() { ps.Routes[0].Retries = 3 }},
	}
	prev := first
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change()
			cached, err := BuildCached(c, cat, ps, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := cached.Validate(); err != nil {
				t.Fatal(err)
			}
			fresh, err := Build(cat, ps, opts)
			if err != nil {
				t.Fatal(err)
			}
			if dump(cached) != dump(fresh) {
				t.Fatal("cached build differs from a fresh build")
			}
			if dump(cached) == dump(prev) {
				t.Fatal("the change did not change the output")
			}
			reused := 0
			for _, e := range cached.entries {
				for _, p := range prev.entries {
					if e == p {
						reused++
						break
					}
				}
			}
			if reused < len(cached.entries)-1 {
				t.Fatalf("reused %d of %d service entries; want all but the changed one", reused, len(cached.entries))
			}
			prev = cached
		})
	}
}
