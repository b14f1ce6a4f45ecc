package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/preview"
	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/policies"
)

func newRolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Watch and steer progressive deliveries (Rollout policies): status, promote, abort, history",
		Long: `A Rollout policy (policies/README.md, kind Rollout) moves a canary through
steps: the weight of a CanaryRoute's new subset, or a FilterRelease's
rolloutPercent. At every analysis interval the plane asks Prometheus
(--prometheus-url on the plane) the policy's PromQL queries; a value past
its threshold is a failure, and failureLimit failures move the traffic back
to where the rollout started, check health, and escalate (webhook, metric
meshwarden_controlplane_rollouts_escalated) if health does not return.
A query that fails or returns no sample is inconclusive, never a pass:
inconclusiveLimit of them in a row pause the rollout (or roll it back, with
onInconclusive: rollback), and the status says why.

The plane keeps each rollout's state in Consul KV: a restarted plane resumes
it. Someone editing the target's weights in the policy files during a
rollout takes over: the edit is in force and the rollout pauses.

Phases: Progressing, AwaitingApproval (a step with approval: true), Paused,
RollingBack (traffic back, checking health), and the final ones Promoted,
RolledBack, Escalated, Aborted, Refused (another rollout holds the target).

Every decision, with its evidence (query, value, threshold), is in the
plane's signed change log (op_type ROLLOUT_DECISION) and its log.`,
		Example: `  meshwarden rollout status --plane 127.0.0.1:18001
  meshwarden rollout promote payments-v2      # pass an approval gate, or resume a paused rollout
  meshwarden rollout abort payments-v2        # traffic back to where it started
  meshwarden rollout history payments-v2      # every decision with its evidence`,
	}
	cmd.AddCommand(newRolloutStatusCmd(), newRolloutVerbCmd("promote"), newRolloutVerbCmd("abort"), newRolloutHistoryCmd())
	return cmd
}

type rolloutCLI struct{ planeCLI }

func (o *rolloutCLI) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.plane, "plane", defaultPlane(), "the control plane's admin address ($MESHWARDEN_PLANE)")
	cmd.Flags().StringVar(&o.format, "format", "text", "text or json")
	planeFlags(cmd, &o.po)
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if o.format != "text" && o.format != "json" {
			return exitcode.Usagef("--format %q: use text or json", o.format)
		}
		return nil
	}
}

func newRolloutStatusCmd() *cobra.Command {
	var o rolloutCLI
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show each rollout: phase, step, weight in force and why",
		Long: `Lists the rollouts the plane knows (needs operator:read): target, phase,
current step and the canary's share in force, and the reason of a pause or of
the end (with the failing query's value). With NAME, only that rollout and
its last decisions.`,
		Example: `  meshwarden rollout status --plane 127.0.0.1:18001 --ca-file connect-ca.pem --token-file ops.token
  meshwarden rollout status payments-v2 --format json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			recs, err := o.list(cmd.Context(), args)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.format == "json" {
				return writeJSON(out, recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(out, "no rollouts: apply a policy of kind Rollout (policies/README.md)")
			}
			for _, r := range recs {
				printRollout(out, r, len(args) == 1)
			}
			return nil
		},
	}
	o.flags(cmd)
	return cmd
}

func (o *rolloutCLI) list(ctx context.Context, args []string) ([]controlplane.RolloutRecord, error) {
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	recs, err := c.Rollouts(ctx)
	if err != nil || len(args) == 0 {
		return recs, err
	}
	for _, r := range recs {
		if r.Name == args[0] {
			return []controlplane.RolloutRecord{r}, nil
		}
	}
	return nil, exitcode.Finding(fmt.Errorf("no rollout %q: meshwarden rollout status lists them", args[0]))
}

func printRollout(out io.Writer, r controlplane.RolloutRecord, detail bool) {
	st := r.State
	fmt.Fprintf(out, "%s  %s  %s  step %d/%d  canary at %d%%", r.Name, r.Target, st.Phase, st.Step+1, len(r.Spec.Steps), st.Weight)
	if r.Override == nil && !st.Phase.Terminal() {
		fmt.Fprint(out, " (the policy files' own split is in force)")
	}
	fmt.Fprintln(out)
	if st.Reason != "" {
		fmt.Fprintf(out, "  why: %s\n", st.Reason)
	}
	if r.Note != "" {
		fmt.Fprintf(out, "  note: %s\n", r.Note)
	}
	if st.Phase == rollout.Promoted && r.Override != nil {
		fmt.Fprintf(out, "  the plane holds the canary at %d%%: write that split into the %s policy to make it permanent\n", *r.Override, r.Target)
	}
	if detail {
		h := r.History
		if len(h) > 10 {
			h = h[len(h)-10:]
		}
		for _, d := range h {
			printDecision(out, d)
		}
	}
}

func printDecision(out io.Writer, d rollout.Decision) {
	line := fmt.Sprintf("  %s  %-14s step %d weight %3d%%", d.Time.UTC().Format("15:04:05.000"), d.Action, d.Step+1, d.Weight)
	if d.Result != "" {
		line += "  " + d.Result
	}
	if d.Reason != "" {
		line += "  " + d.Reason
	}
	fmt.Fprintln(out, line)
	for _, x := range d.Evidence {
		if x.Error != "" {
			fmt.Fprintf(out, "      %s: %s  (%s)  %s\n", x.Metric, x.Error, x.Threshold, x.Query)
			continue
		}
		fmt.Fprintf(out, "      %s = %g (want %s) %s  %s\n", x.Metric, x.Value, x.Threshold, x.Result, x.Query)
	}
}

func newRolloutVerbCmd(verb string) *cobra.Command {
	var o rolloutCLI
	short := map[string]string{
		"promote": "Approve the waiting step, resume a paused rollout, or skip to the next step",
		"abort":   "Stop a rollout and move the traffic back to where it started",
	}[verb]
	long := map[string]string{
		"promote": `Needs mesh:write. At an approval gate (phase AwaitingApproval) it applies the
step's weight; on a paused rollout (Prometheus unanswered, a manual edit) it
resumes from the current step (an approval step waits for one more promote);
while progressing it skips to the next step, and on the last one promotes.
The decision names you (the principal your token authenticates as).`,
		"abort": `Needs mesh:write. The canary's share goes back to where the rollout started
and the rollout ends (Aborted). To start again, change the Rollout policy
(a new generation) or remove and re-apply it.`,
	}[verb]
	cmd := &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Long:    long,
		Example: "  meshwarden rollout " + verb + " payments-v2 --plane 127.0.0.1:18001 --ca-file connect-ca.pem --token-file alice.token",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := showFromPlane(cmd, &o.planeCLI,
				func(c *preview.PlaneClient, ctx context.Context) (*controlplane.RolloutRecord, error) {
					r, err := c.RolloutCommand(ctx, args[0], verb)
					if err != nil {
						return nil, fmt.Errorf("rollout %s %s: %w", verb, args[0], err)
					}
					return r, nil
				},
				func(out io.Writer, r *controlplane.RolloutRecord) error { printRollout(out, *r, false); return nil })
			return err
		},
	}
	o.flags(cmd)
	return cmd
}

func newRolloutHistoryCmd() *cobra.Command {
	var o rolloutCLI
	var changelog string
	cmd := &cobra.Command{
		Use:   "history [NAME]",
		Short: "Every decision of a rollout, with its evidence (query, value, threshold)",
		Long: `From the plane (the last 200 decisions per rollout, kept in Consul KV), or
with --changelog from the plane's signed change log file, whose chain is
verified first (ROLLOUT_DECISION records; every decision ever taken).`,
		Example: `  meshwarden rollout history payments-v2
  meshwarden rollout history --changelog /var/lib/meshwarden/policy-changes.jsonl`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if changelog != "" {
				return historyFromChangeLog(out, changelog, args)
			}
			recs, err := o.list(cmd.Context(), args)
			if err != nil {
				return err
			}
			for _, r := range recs {
				fmt.Fprintf(out, "%s  %s  (%s, generation %s)\n", r.Name, r.Target, r.State.Phase, r.Generation)
				for _, d := range r.History {
					printDecision(out, d)
				}
			}
			return nil
		},
	}
	o.flags(cmd)
	cmd.Flags().StringVar(&changelog, "changelog", "", "read the plane's change log file (its --changelog) instead of asking the plane")
	return cmd
}

func historyFromChangeLog(out io.Writer, path string, args []string) error {
	recs, err := policies.ReadChangeLog(path)
	if err != nil {
		return exitcode.Finding(fmt.Errorf("change log: %w", err))
	}
	n := 0
	for _, r := range recs {
		if r.OpType != policies.OpRolloutDecision {
			continue
		}
		var ev controlplane.RolloutEvent
		if err := json.Unmarshal([]byte(r.Diff), &ev); err != nil {
			return fmt.Errorf("change log record %d: %w", r.Seq, err)
		}
		if len(args) == 1 && ev.Rollout != args[0] {
			continue
		}
		n++
		fmt.Fprintf(out, "#%d %s %s by %s\n", r.Seq, ev.Rollout, ev.Target, ev.Identity)
		printDecision(out, ev.Decision)
	}
	fmt.Fprintf(out, "OK: change log chain verified (%d records), %d rollout decision(s)\n", len(recs), n)
	return nil
}

// rolloutRecorder records rollout decisions in the plane's change log:
// each is an audit event (op_type ROLLOUT_DECISION, resource
// rollout:<name>, method the action) whose body is the decision with its
// evidence.
func rolloutRecorder(cl *policies.ChangeLog) func(context.Context, controlplane.RolloutEvent) error {
	return func(ctx context.Context, e controlplane.RolloutEvent) error {
		body, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = cl.Append(ctx, policies.Change{Identity: e.Identity, Time: e.Decision.Time, Revision: e.Revision,
			Source: "rollout " + e.Rollout + " (" + e.Target + ")", Diff: string(body),
			OpType: policies.OpRolloutDecision, Resource: "rollout:" + e.Rollout, Method: strings.ToUpper(e.Decision.Action)})
		return err
	}
}

// postWebhook POSTs a rollout event as JSON (5s bound); a non-2xx answer
// is an error.
func postWebhook(ctx context.Context, url string, e controlplane.RolloutEvent) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// rolloutConfig sets the plane's rollout controller from the flags: the
// Prometheus it queries, where its state lives, the change log that
// records its decisions and the webhook of escalations.
func rolloutConfig(cfg *controlplane.RunConfig, f controlPlaneFlags, cl *policies.ChangeLog) error {
	o := controlplane.RolloutOptions{Disabled: !f.rollouts, KVPrefix: f.rolloutKVPrefix, Notify: postWebhook}
	if f.prometheusURL != "" {
		if !strings.HasPrefix(f.prometheusURL, "http://") && !strings.HasPrefix(f.prometheusURL, "https://") {
			return exitcode.Usagef("--prometheus-url %q: give the server's URL, e.g. http://127.0.0.1:9090", f.prometheusURL)
		}
		q, err := rollout.NewPrometheus(f.prometheusURL)
		if err != nil {
			return fmt.Errorf("--prometheus-url: %w", err)
		}
		o.Querier = q
	}
	if cl != nil {
		o.Record = rolloutRecorder(cl)
	}
	cfg.Rollouts = o
	return nil
}
