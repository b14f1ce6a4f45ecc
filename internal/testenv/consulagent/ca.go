package consulagent

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// SetCAConfig rewrites the Connect CA configuration of the agent's provider
// with fields changed and validation skipped: LeafCertTTL below 1h, or a new
// PrivateKey (with RootCert "") to rotate the root. Right after the agent
// starts, the CA may still be initialising (Consul answers 500 "CA is already
// in state INITIALIZING"), so failures are retried for up to 30s.
func SetCAConfig(ctx context.Context, c *api.Client, fields map[string]any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		cur, _, err := c.Connect().CAGetConfig((&api.QueryOptions{}).WithContext(ctx))
		if err == nil {
			cfg := make(map[string]any, len(cur.Config)+len(fields)+1)
			for k, v := range cur.Config {
				cfg[k] = v
			}
			cfg["SkipValidate"] = true
			for k, v := range fields {
				cfg[k] = v
			}
			_, err = c.Connect().CASetConfig(&api.CAConfig{Provider: cur.Provider, Config: cfg}, (&api.WriteOptions{}).WithContext(ctx))
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("set Connect CA config: %w", last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
