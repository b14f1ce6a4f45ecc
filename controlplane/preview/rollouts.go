package preview

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/meshwarden/meshwarden/controlplane"
)

// Rollouts returns every rollout the plane knows (GET /v1/rollouts, needs
// operator:read).
func (c *PlaneClient) Rollouts(ctx context.Context) ([]controlplane.RolloutRecord, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/rollouts", nil, nil)
	if err != nil {
		return nil, err
	}
	var out []controlplane.RolloutRecord
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("GET /v1/rollouts: want a list of rollouts: %w", err)
	}
	return out, nil
}

// RolloutCommand sends promote or abort for rollout name (needs
// mesh:write) and returns the rollout after it.
func (c *PlaneClient) RolloutCommand(ctx context.Context, name, verb string) (*controlplane.RolloutRecord, error) {
	b, err := c.do(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(name)+"/"+verb, nil, nil)
	if err != nil {
		return nil, err
	}
	var out controlplane.RolloutRecord
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("POST /v1/rollouts/%s/%s: %w", name, verb, err)
	}
	return &out, nil
}
