package intentions

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/ir"
)

func entry(dest string, sources ...*api.SourceIntention) *api.ServiceIntentionsConfigEntry {
	return &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: dest, Sources: sources}
}

func src(name string, a api.IntentionAction, perms ...*api.IntentionPermission) *api.SourceIntention {
	return &api.SourceIntention{Name: name, Action: a, Permissions: perms}
}

// TestIntentionTranslate: every intention shape becomes the access policy
// the package documentation promises, stricter (never looser) when it
// cannot be expressed exactly.
func TestIntentionTranslate(t *testing.T) {
	got, warnings := Translate([]api.ConfigEntry{
		entry("ledger", src("orders", api.IntentionActionAllow), src("*", api.IntentionActionDeny)),
		entry("payments", src("intruder", api.IntentionActionDeny)),
		entry("billing",
			src("orders", "", &api.IntentionPermission{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/v1/", Methods: []string{"GET"}}},
				&api.IntentionPermission{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathRegex: "/v1/.*"}}),
			src("web", "", &api.IntentionPermission{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{PathRegex: "/admin/.*"}}),
			src("*", api.IntentionActionDeny)),
	})
	want := []ir.AccessPolicy{
		{Service: "billing", Name: SourceName, Source: "consul:service-intentions/billing", Rules: []ir.AccessRule{
			{Name: "intention-orders-0", From: []string{"orders"}, Methods: []string{"GET"}, Paths: []string{"/v1/**"}, Source: "consul:service-intentions/billing"},
			{Name: "intention-web-0", Deny: true, From: []string{"web"}, Source: "consul:service-intentions/billing"},
		}},
		{Service: "ledger", Name: SourceName, Source: "consul:service-intentions/ledger", Rules: []ir.AccessRule{
			{Name: "intention-orders", From: []string{"orders"}, Source: "consul:service-intentions/ledger"},
		}},
		{Service: "payments", Name: SourceName, DefaultAllow: true, Source: "consul:service-intentions/payments", Rules: []ir.AccessRule{
			{Name: "intention-intruder", Deny: true, From: []string{"intruder"}, Source: "consul:service-intentions/payments"},
		}},
	}
	gj, _ := json.MarshalIndent(got, "", " ")
	wj, _ := json.MarshalIndent(want, "", " ")
	if string(gj) != string(wj) {
		t.Errorf("translated:\n%s\nwant:\n%s", gj, wj)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "allow is dropped") || !strings.Contains(warnings[1], "deny covers every request") {
		t.Errorf("warnings = %q", warnings)
	}
	for _, p := range got {
		if err := p.Validate(); err != nil {
			t.Errorf("translated policy invalid: %v", err)
		}
	}
}

// TestIntentionMergePrecedence: an AccessPolicy document wins for its
// service; intentions fill the other services.
func TestIntentionMergePrecedence(t *testing.T) {
	ps := &ir.PolicySet{Access: []ir.AccessPolicy{{Service: "ledger", Name: "file", Source: "access.yaml:1"}}}
	merged, notes := Merge(ps, []ir.AccessPolicy{
		{Service: "ledger", Name: SourceName, Source: "consul:service-intentions/ledger"},
		{Service: "billing", Name: SourceName, Source: "consul:service-intentions/billing"},
	})
	if len(merged.Access) != 2 || merged.Access[0].Service != "billing" || merged.Access[1].Name != "file" {
		t.Errorf("merged = %+v", merged.Access)
	}
	if len(ps.Access) != 1 {
		t.Errorf("Merge modified its input")
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "access.yaml:1 takes precedence") {
		t.Errorf("notes = %q", notes)
	}
}

// TestIntentionWatcherFollowsConsul runs a real Consul agent: an intention
// written with the API reaches Policies without a restart, a change follows,
// and when Consul goes away the last good set stays with Status stale.
func TestIntentionWatcherFollowsConsul(t *testing.T) {
	agent, client := consultest.Start(t)
	w := NewWatcher(client, nil, 2*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !cond() {
			select {
			case <-w.Changed():
			case <-time.After(time.Second):
			case <-deadline:
				t.Fatalf("timed out waiting for %s; status %+v policies %+v", what, w.Status(), w.Policies())
			}
		}
	}
	set := func(e *api.ServiceIntentionsConfigEntry) {
		t.Helper()
		if _, _, err := client.ConfigEntries().Set(e, nil); err != nil {
			t.Fatal(err)
		}
	}
	set(entry("ledger", src("orders", api.IntentionActionAllow), src("*", api.IntentionActionDeny)))
	waitFor("the first intention", func() bool {
		p := w.Policies()
		return len(p) == 1 && p[0].Service == "ledger" && !p[0].DefaultAllow && len(p[0].Rules) == 1
	})
	set(entry("ledger", src("orders", api.IntentionActionAllow), src("intruder", api.IntentionActionAllow), src("*", api.IntentionActionDeny)))
	waitFor("the changed intention", func() bool {
		p := w.Policies()
		return len(p) == 1 && len(p[0].Rules) == 2
	})
	if st := w.Status(); st.Stale || st.Index == 0 || st.LastSuccess.IsZero() {
		t.Fatalf("status while current: %+v", st)
	}
	agent.Stop()
	waitFor("staleness", func() bool { return w.Status().Stale })
	if p := w.Policies(); len(p) != 1 || len(p[0].Rules) != 2 {
		t.Errorf("the last good set was dropped: %+v", p)
	}
	if st := w.Status(); st.Error == "" {
		t.Errorf("stale status without an error: %+v", st)
	}
}
