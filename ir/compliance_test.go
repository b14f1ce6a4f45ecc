package ir

import (
	"strings"
	"testing"
)

func TestResidencyRegion(t *testing.T) {
	c := &Compliance{Service: "payments", Regions: []string{"eu-west", "dc-eu"}, RegionKey: "region"}
	tests := []struct {
		name   string
		in     Instance
		region string
		allow  bool
	}{
		{"node meta wins", Instance{Datacenter: "dc-eu", NodeMeta: map[string]string{"region": "us-east"}}, "us-east", false},
		{"node meta allowed", Instance{Datacenter: "dc1", NodeMeta: map[string]string{"region": "eu-west"}}, "eu-west", true},
		{"datacenter without node meta", Instance{Datacenter: "dc-eu"}, "dc-eu", true},
		{"service meta is not trusted", Instance{Datacenter: "dc1", Meta: map[string]string{"region": "eu-west"}}, "dc1", false},
		{"nothing known", Instance{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.Region(c.RegionKey); got != tt.region {
				t.Errorf("Region = %q, want %q", got, tt.region)
			}
			if got := c.Allows(tt.in); got != tt.allow {
				t.Errorf("Allows = %v, want %v", got, tt.allow)
			}
		})
	}
	if !(&Compliance{Service: "x"}).Allows(Instance{}) {
		t.Error("a policy without regions must allow every instance")
	}
}

func TestComplianceValidate(t *testing.T) {
	ps := &PolicySet{Compliance: []Compliance{
		{Service: "payments", Regions: []string{"eu"}, Source: "a.yaml:1"},
		{Service: "payments", Tags: []string{"pci"}, Source: "b.yaml:1"},
		{Service: "", Source: "c.yaml:1"},
		{Service: "orders", Regions: []string{""}, Source: "d.yaml:1"},
	}}
	err := ps.Validate()
	for _, want := range []string{`b.yaml:1: service "payments" has more than one compliance policy`, "c.yaml:1: compliance policy: service is empty", `d.yaml:1: compliance policy for "orders": an allowed region is empty`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	if ps.ComplianceFor("orders") == nil || ps.ComplianceFor("web") != nil {
		t.Error("ComplianceFor")
	}
}
