package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/auditstore/query"
	"github.com/meshwarden/meshwarden/internal/exitcode"
)

func newAuditReportCmd() *cobra.Command {
	var ff filterFlags
	var output string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Summarise, per compliance tag and period, what was recorded, masked, flagged and blocked",
		Long: `report reads an audit trail and prints, for every compliance tag the records
carry (pci, gdpr, region=eu; records without one under (untagged)):
requests and records, values masked in the records (field actions: mask,
hash, redact; and detections under mask-in-audit), PII detections per
detector, bodies longer than the scan bound, blocked requests per reason,
and the HMAC key ids the records name. A record with several tags counts
under each. Run audit verify on the same directory to prove the trail intact.`,
		Example: `  meshwarden audit report --dir ./audit-data --from 2026-12-01 --to 2026-12-02
  meshwarden audit report --dir ./audit-data --from 720h --tag pci -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter()
			if err != nil {
				return err
			}
			if output != "text" && output != "json" {
				return exitcode.Usagef("--output %q: use text or json", output)
			}
			rep, err := query.BuildReport(cmd.Context(), ff.dir, f)
			if err != nil {
				return err
			}
			if f.Tag != "" {
				// Only the asked tag's row (its records may carry others).
				var keep []query.TagReport
				for _, r := range rep.Tags {
					if r.Tag == f.Tag {
						keep = append(keep, r)
					}
				}
				rep.Tags = append([]query.TagReport{}, keep...)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return writeReport(cmd.OutOrStdout(), ff.dir, rep)
		},
	}
	ff.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (for people) or json")
	return cmd
}

// writeReport prints the report as plain text: a table, then one
// paragraph per tag with the breakdowns.
func writeReport(w io.Writer, dir string, rep *query.Report) error {
	from, to := rep.From, rep.To
	if from == "" {
		from = "the first record"
	}
	if to == "" {
		to = "the last record"
	}
	fmt.Fprintf(w, "Compliance report for %s, from %s to %s\n\n", dir, from, to)
	if len(rep.Tags) == 0 {
		_, err := fmt.Fprintln(w, "No records in this period.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TAG\tREQUESTS\tRECORDS\tMASKED FIELDS\tPII DETECTIONS\tOVER SCAN BOUND\tBLOCKED\t")
	for _, r := range rep.Tags {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Tag, r.Requests, r.Records, r.MaskedFields, r.Detections, r.ScanLimited, r.Blocked)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Tags {
		fmt.Fprintf(w, "\n%s\n", r.Tag)
		fmt.Fprintf(w, "  masked fields:  %d%s\n", r.MaskedFields, breakdown(r.ByAction))
		fmt.Fprintf(w, "  PII detections: %d%s\n", r.Detections, breakdown(r.ByDetector))
		fmt.Fprintf(w, "  blocked:        %d%s\n", r.Blocked, breakdown(r.ByReason))
		if len(r.KeyIDs) > 0 {
			fmt.Fprintf(w, "  hash keys:      %s (an auditor re-derives hmac-sha256 values with these keys)\n", strings.Join(r.KeyIDs, ", "))
		}
	}
	return nil
}

// breakdown is " (a 2, b 1)" sorted by count then name, or "".
func breakdown(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
