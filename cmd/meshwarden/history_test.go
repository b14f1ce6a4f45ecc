package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

// TestPolicyHistory lists the store's history and verifies its chain; an
// entry edited in Consul KV fails the command.
func TestPolicyHistory(t *testing.T) {
	a, client := consultest.Long(t)
	ctx := context.Background()
	store := policystore.New(client, "")
	var base *policystore.Set
	for i, rev := range []string{"aaaa", "bbbb"} {
		next, err := store.Put(ctx, &policystore.Set{Revision: strings.Repeat(rev, 16), Files: map[string]string{"x.yaml": rev},
			AppliedBy: "consul token 1 (alice)", Source: "api", Replica: "r1", Time: time.Now().UTC()}, base)
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		base = next
	}
	out, _, err := runCLI(t, "policy", "history", "--consul", a.Addr())
	if err != nil || !strings.Contains(out, "OK: 2 set(s), chain verified") || !strings.Contains(out, "by consul token 1 (alice)") {
		t.Fatalf("history: %v\n%s", err, out)
	}
	// Rewrite history entry #1 (who applied it) without fixing the chain.
	pair, _, err := client.KV().Get(policystore.DefaultPrefix+"/history/00000000000000000001", nil)
	if err != nil || pair == nil {
		t.Fatal(err)
	}
	pair.Value = []byte(strings.Replace(string(pair.Value), "alice", "mallory", 1))
	if _, err := client.KV().Put(&api.KVPair{Key: pair.Key, Value: pair.Value}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "policy", "history", "--consul", a.Addr()); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("an edited history entry passed: %v", err)
	}
}
