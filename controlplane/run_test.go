package controlplane

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

// TestRunConfigValidate: a configuration the plane cannot run with is
// refused before anything is bound, naming the flag to change.
func TestRunConfigValidate(t *testing.T) {
	ok := RunConfig{LoadPolicies: jsonLoader}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*RunConfig)
		want string
	}{
		{"no loader", func(c *RunConfig) { c.LoadPolicies = nil }, "RunConfig.LoadPolicies is nil"},
		{"collector not host:port", func(c *RunConfig) { c.AuditCollector = "collector" }, `--audit-collector "collector": give host:port`},
		{"otlp not host:port", func(c *RunConfig) { c.OTLPEndpoint = "otel" }, `--otlp-endpoint "otel"`},
		{"insecure off loopback", func(c *RunConfig) { c.InsecureDev, c.AdminAddress = true, "0.0.0.0:0" }, "refused on --admin-addr 0.0.0.0:0"},
		{"unknown store", func(c *RunConfig) { c.PolicyStore = "etcd" }, `--policy-store "etcd": give consul`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Start(context.Background(), RunConfig{LoadPolicies: jsonLoader, PolicyStore: "etcd"}); err == nil {
		t.Fatal("Start accepted a configuration Validate refuses")
	}
}

// TestStartClose: a development plane started on ephemeral loopback ports
// serves its probes and registers in Consul; Close deregisters it and
// releases every port.
func TestStartClose(t *testing.T) {
	agent, client := consultest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Start(ctx, RunConfig{
		ConsulAddress: agent.Addr(), LoadPolicies: jsonLoader, PolicyStore: "memory",
		XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", PublicAddress: "127.0.0.1:0",
		FiltersDir: t.TempDir(), InsecureDev: true, Register: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + p.PublicAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
	registered := func() int {
		svcs, _, err := client.Catalog().Service(meshnames.PlaneServiceName, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(svcs)
	}
	if n := registered(); n != 1 {
		t.Fatalf("%d registrations of %s, want 1", n, meshnames.PlaneServiceName)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := registered(); n != 0 {
		t.Fatalf("%d registrations after Close, want 0", n)
	}
	for _, a := range []net.Addr{p.XDSAddr(), p.AdminAddr(), p.PublicAddr()} {
		if c, err := net.DialTimeout("tcp", a.String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Close", a)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
