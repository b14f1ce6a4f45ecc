package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Prometheus is a Querier on a Prometheus server's HTTP API (client_golang's
// API client).
type Prometheus struct {
	api promv1.API
	// Timeout bounds each query (default 10s).
	Timeout time.Duration
}

// NewPrometheus returns a Querier for the server at url
// (e.g. http://127.0.0.1:9090).
func NewPrometheus(url string) (*Prometheus, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", url, err)
	}
	return &Prometheus{api: promv1.NewAPI(c)}, nil
}

// Query runs an instant query and returns its values (one per sample of a
// vector, one for a scalar).
func (p *Prometheus) Query(ctx context.Context, q string) ([]float64, error) {
	to := p.Timeout
	if to <= 0 {
		to = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	v, _, _, err := p.api.Query(ctx, q, time.Now())
	if err != nil {
		return nil, fmt.Errorf("prometheus query %q: %w", q, err)
	}
	switch x := v.(type) {
	case model.Vector:
		out := make([]float64, len(x))
		for i, s := range x {
			out[i] = float64(s.Value)
		}
		return out, nil
	case *model.Scalar:
		return []float64{float64(x.Value)}, nil
	default:
		return nil, fmt.Errorf("prometheus query %q: a %s, want a vector or a scalar", q, v.Type())
	}
}
