package consulagent_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

// TestSetCAConfigRightAfterStart sets a leaf TTL below Consul's 1h minimum
// the moment the agent answers, when its Connect CA may still be
// initialising, and reads it back.
func TestSetCAConfigRightAfterStart(t *testing.T) {
	_, c := consultest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := consulagent.SetCAConfig(ctx, c, map[string]any{"LeafCertTTL": "2m"}); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := c.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config["LeafCertTTL"]; got != "2m" {
		t.Fatalf("LeafCertTTL = %v after SetCAConfig, want 2m", got)
	}
}
