// Package consultest starts a real Consul agent for a test and stops it when
// the test ends. A missing binary fails the test with the command that builds
// it: tests never silently skip Consul.
package consultest

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
)

// Start runs a dev agent on free loopback ports for the life of t.
func Start(t testing.TB) (*consulagent.Agent, *api.Client) {
	t.Helper()
	return StartWith(t, consulagent.Options{})
}

// StartWith runs an agent with opts for the life of t.
func StartWith(t testing.TB, opts consulagent.Options) (*consulagent.Agent, *api.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	a, err := consulagent.Start(ctx, opts)
	if err != nil {
		t.Fatalf("consul: %v", err)
	}
	t.Cleanup(a.Stop)
	c, err := a.Client()
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}
