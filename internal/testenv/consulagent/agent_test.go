package consulagent_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

func TestAgentRegistersAndRestarts(t *testing.T) {
	a, c := consultest.StartWith(t, consulagent.Options{DataDir: t.TempDir()})
	reg := &api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 8080, Address: "127.0.0.1", Meta: map[string]string{"version": "v1"}}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	svcs, _, err := c.Catalog().Service("web", "", nil)
	if err != nil || len(svcs) != 1 || svcs[0].ServiceMeta["version"] != "v1" {
		t.Fatalf("catalog: %v %+v", err, svcs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// A persistent agent keeps its registration across the restart.
	deadline := time.Now().Add(20 * time.Second)
	for {
		svcs, _, err = c.Catalog().Service("web", "", nil)
		if err == nil && len(svcs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service lost across restart: %v %+v", err, svcs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
