package ir

import "testing"

func TestResilienceTightenUnhealthy(t *testing.T) {
	base := &Outlier{Consecutive5xx: 5, Consecutive5xxUnhealthy: 1}
	ps := &PolicySet{Resilience: []Resilience{
		{Service: "shop", ResilienceSettings: ResilienceSettings{Outlier: base},
			Subsets: []SubsetResilience{{Subset: "v1", ResilienceSettings: ResilienceSettings{Timeout: 1}}}},
		{Service: "cart", ResilienceSettings: ResilienceSettings{Outlier: &Outlier{Consecutive5xx: 3}}},
	}}
	if got := TightenUnhealthy(ps, nil); got != ps {
		t.Fatal("nothing unhealthy: the set must be returned as is")
	}
	if got := TightenUnhealthy(ps, map[string]map[string]bool{"cart": {"": true}}); got != ps {
		t.Fatal("cart has no consecutive5xxWhenUnhealthy: nothing may change")
	}
	got := TightenUnhealthy(ps, map[string]map[string]bool{"shop": {"v1": true, "v2": true}})
	shop := got.Resilience[0]
	for _, sub := range []string{"v1", "v2"} {
		if o := shop.For(sub).Outlier; o == nil || o.Consecutive5xx != 1 {
			t.Fatalf("shop/%s outlier %+v, want consecutive5xx 1", sub, o)
		}
	}
	if shop.For("v1").Timeout != 1 || shop.For("").Outlier.Consecutive5xx != 5 {
		t.Fatalf("other settings changed: %+v", shop)
	}
	if ps.Resilience[0].For("v1").Outlier.Consecutive5xx != 5 || len(ps.Resilience[0].Subsets) != 1 || base.Consecutive5xx != 5 {
		t.Fatal("the input policy set was modified")
	}
}
