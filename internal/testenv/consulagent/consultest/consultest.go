// Package consultest starts a real Consul agent for a test and stops it when
// the test ends. A missing binary fails the test with the command that builds
// it: tests never silently skip Consul.
package consultest

import (
	"context"
	"crypto/tls"
	"strings"
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

// Long is Start for a test that -short leaves out: under -short it skips t
// ("needs a Consul agent") before anything starts.
func Long(t testing.TB) (*consulagent.Agent, *api.Client) {
	t.Helper()
	return LongWith(t, consulagent.Options{})
}

// LongWith is StartWith for a test that -short leaves out (see Long).
func LongWith(t testing.TB, opts consulagent.Options) (*consulagent.Agent, *api.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	return StartWith(t, opts)
}

// Leaf returns the Connect leaf the agent of c issues for service, as a TLS
// certificate to present.
func Leaf(t testing.TB, c *api.Client, service string) tls.Certificate {
	t.Helper()
	leaf, _, err := c.Agent().ConnectCALeaf(service, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// StartWith runs an agent with opts for the life of t. Free ports are
// chosen, then released for Consul to bind: an agent another test package
// started at the same moment may take one first, so that one error ("address
// already in use") is retried, a bounded number of times.
func StartWith(t testing.TB, opts consulagent.Options) (*consulagent.Agent, *api.Client) {
	t.Helper()
	var a *consulagent.Agent
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		a, err = consulagent.Start(ctx, opts)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(time.Second)
	}
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
