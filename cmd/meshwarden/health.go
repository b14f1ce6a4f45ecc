package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/controlplane/preview"
	"github.com/meshwarden/meshwarden/internal/exitcode"
)

func newHealthCmd() *cobra.Command {
	var o planeCLI
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show the health score of every service subset, as the plane computes it",
		Long: `Health asks the plane (GET /v1/health, operator:read) for the score of every
service subset (one per upstream cluster: "payments~v2" is service payments,
subset v2; "(all)" is the all-instances cluster).

The plane scores from the Prometheus metrics of the proxies it scrapes
(controlplane --health-scrape URL, e.g. a gateway's http://127.0.0.1:9901/metrics),
taking deltas between two scrapes:

  p95        p95 latency of the window over the latency target
             (ResiliencePolicy healthWeights.latencyTarget, else the route timeout)
  errors     share of 5xx responses
  drop       share of traffic lost against the moving average of the rate
  saturation requests, connections or pending requests over the circuit
             breaker limits (1024 when none is set)

score = 1 - (weighted sum of the four, each 0-1). The weights are the
service's ResiliencePolicy healthWeights (0.25 each by default). Below
--health-threshold (default 0.7) a subset is UNHEALTHY and the plane scrapes
at --health-fast-interval until it recovers (adaptive probing), and its cluster
gets the policy's outlierDetection.consecutive5xxWhenUnhealthy (ejection
tightened while unhealthy). The same
scores are the metric meshwarden_controlplane_subset_health_score{service,subset}
and appear in 'meshwarden policy status'.

Exit status 1 when a subset is UNHEALTHY (for scripts), 0 otherwise.`,
		Example: `  meshwarden health --plane 127.0.0.1:18001
  meshwarden health --plane 127.0.0.1:18001 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := showFromPlane(cmd, &o, (*preview.PlaneClient).Health,
				func(out io.Writer, st *health.Status) error { printHealth(out, st); return nil })
			if err != nil {
				return err
			}
			n := 0
			for _, sc := range st.Scores {
				if sc.Unhealthy {
					n++
				}
			}
			if n > 0 {
				return exitcode.Finding(fmt.Errorf("%d of %d subsets are UNHEALTHY", n, len(st.Scores)))
			}
			return nil
		},
	}
	o.planeFlags(cmd, "operator:read")
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "text or json")
	return cmd
}

// printHealth writes the scores as a table, then the scrape state.
func printHealth(out io.Writer, st *health.Status) {
	fmt.Fprintf(out, "%-20s %-10s %5s %-9s %s\n", "SERVICE", "SUBSET", "SCORE", "STATE", "SIGNALS")
	for _, sc := range st.Scores {
		fmt.Fprintln(out, health.FormatScore(sc))
	}
	if len(st.Scores) == 0 {
		fmt.Fprintln(out, "(no scores yet: two scrapes with traffic are needed)")
	}
	last := "never"
	if !st.LastScrape.IsZero() {
		last = st.LastScrape.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(out, "threshold %.2f, probing every %s, last scrape %s, targets %v\n", st.Threshold, st.ProbeInterval, last, st.Targets)
	for _, e := range st.ScrapeErrors {
		fmt.Fprintf(out, "scrape error: %s\n", e)
	}
}
