package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
)

// newTraceCmd looks at the traces the demo's OTLP sink holds.
func newTraceCmd() *cobra.Command {
	var sink string
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Look at traces held by the demo's OTLP sink (list, show TRACE_ID)",
		Long: `The demo (meshwarden demo --stay) runs a small OTLP/HTTP receiver that keeps
the spans the gateway and the trace filter send; 'demo --stay' prints its
address. 'trace list' lists the traces it holds, newest first; 'trace show
TRACE_ID' prints one trace as a span tree: name, service, span and parent
ids, duration, lane and status. In production, send spans to your own
collector (OTEL_EXPORTER_OTLP_* on the gateway) and look at them there.`,
		Example: `  meshwarden trace list --sink http://127.0.0.1:4318
  meshwarden trace show 4bf92f3577b34da6a3ce929d0e0e4736 --sink http://127.0.0.1:4318`,
	}
	cmd.PersistentFlags().StringVar(&sink, "sink", os.Getenv("MESHWARDEN_TRACE_SINK"), "the demo sink's base URL, as 'demo --stay' prints it ($MESHWARDEN_TRACE_SINK)")
	show := &cobra.Command{
		Use:   "show TRACE_ID",
		Short: "Print one trace as a span tree",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := strings.ToLower(args[0])
			if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || strings.Trim(id, "0") == "" {
				return exitcode.Usagef("trace id %q: give the 32 hex digits of a W3C trace id (trace list shows them)", args[0])
			}
			var spans []otlpsink.Span
			if err := getSink(cmd.Context(), sink, url.Values{"trace_id": {id}}, &spans); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trace %s: %d spans\n", id, len(spans))
			demo.PrintTrace(cmd.OutOrStdout(), spans)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the traces the sink holds, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var traces []otlpsink.TraceSummary
			if err := getSink(cmd.Context(), sink, nil, &traces); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TRACE\tSTART\tSPANS\tDURATION\tROOT\tSERVICES")
			for _, t := range traces {
				start := time.Unix(0, int64(t.StartNS)).UTC().Format(time.RFC3339Nano)
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.3fms\t%s\t%s\n", t.TraceID, start, t.Spans, t.DurationMS, t.Root, t.Services)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(show, list)
	return cmd
}

// getSink GETs the sink's /v1/traces with query q and decodes the JSON
// answer into v. A trace the sink does not hold is a finding (exit 1).
func getSink(ctx context.Context, sink string, q url.Values, v any) error {
	if sink == "" {
		return exitcode.Usagef("no sink: give --sink http://HOST:PORT (meshwarden demo --stay prints it) or set MESHWARDEN_TRACE_SINK")
	}
	u, err := url.Parse(strings.TrimSuffix(sink, "/") + "/v1/traces")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return exitcode.Usagef("--sink %q: give a URL such as http://127.0.0.1:4318", sink)
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := httpget.Get(ctx, nil, u.String())
	if err != nil {
		return fmt.Errorf("trace sink %s: %w: is the demo running (meshwarden demo --stay)?", sink, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("trace sink %s: %w", sink, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && q.Has("trace_id"):
		return exitcode.Finding(fmt.Errorf("%s", strings.TrimSpace(string(body))))
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("trace sink %s: %s: %s", sink, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("trace sink %s: not the demo sink's JSON: %w", sink, err)
	}
	return nil
}
