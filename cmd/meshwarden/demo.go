package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/internal/logflags"
	"github.com/meshwarden/meshwarden/internal/testenv/promagent"
)

func newDemoCmd() *cobra.Command {
	var (
		binDir, policyDir, workDir string
		stay, keep, mtls, verbose  bool
		prom                       bool
		users                      int
		logs                       logflags.Flags
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Bring up Consul, the plane, the gateway and upstreams, and show dyed, audited, traced traffic",
		Long: `demo runs the whole product on this machine, as real processes on loopback:
a Consul agent, the audit collector, the control plane (watching a copy of
--policy-dir), the gateway, and two versions of a "payments" service registered
in Consul with meta version=v1 and version=v2.

It first prints how the gateway runs each filter: native (the official build
of dye, audit or trace, as 'make filters' builds it: the same Go code linked
into the gateway) or wasm (wazero; e.g. filters built another way).
It then sends traffic through the gateway and prints what happened: the lane
split (opt-in canary to v2, a sticky 10% of users), dye anti-spoofing, audit
records of POST /v1/transfers and 'audit verify', one request's trace across
hops, the certificates in use, and (with Prometheus installed) a metric-gated
rollout: a good v2 promoted to 100 % and a bad one rolled back automatically,
every decision printed with its evidence. With --stay it keeps running and prints the
URLs to try; Ctrl-C stops every process it started.

'make demo' builds the filters and this binary, builds Consul once, and runs
this command. --log-format and --log-level are handed to every process it
starts (the story itself is plain text on stdout).`,
		Example: `  make demo
  meshwarden demo --bin-dir bin --stay
  meshwarden demo --policy-dir ./my-policies --keep --work-dir /tmp/mw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := logs.Handler(io.Discard); err != nil {
				return exitcode.Usagef("%w", err)
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the meshwarden binary: %w", err)
			}
			filters := filepath.Join(binDir, "filters")
			for _, f := range []string{"dye", "audit", "trace"} {
				if _, err := os.Stat(filepath.Join(filters, f+".wasm")); err != nil {
					return fmt.Errorf("filter %s.wasm not found in %s: run `make filters` (or pass --bin-dir)", f, filters)
				}
			}
			if workDir == "" {
				workDir, err = os.MkdirTemp("", "meshwarden-demo-")
				if err != nil {
					return err
				}
			} else if err := os.MkdirAll(workDir, 0o755); err != nil {
				return err
			}
			if !keep {
				defer os.RemoveAll(workDir)
			}
			out := cmd.OutOrStdout()
			var log *os.File
			if verbose {
				log = os.Stderr
			} else {
				log, err = os.Create(filepath.Join(workDir, "demo.log"))
				if err != nil {
					return err
				}
				defer log.Close()
				fmt.Fprintf(out, "(process logs: %s%s)\n", log.Name(), map[bool]string{true: "", false: ", removed at exit; --keep keeps them"}[keep])
			}
			withProm := false
			if prom {
				if _, err := promagent.FindBinary(); err != nil {
					fmt.Fprintf(out, "(no progressive-delivery chapter: %v)\n", err)
				} else {
					withProm = true
				}
			}
			sum, err := demo.Run(cmd.Context(), demo.Options{
				Stack: demo.StackOptions{
					Binary: self, FiltersDir: filters, PolicyDir: policyDir, WorkDir: workDir,
					Log: log, MTLS: mtls, Logs: logs, Prometheus: withProm, PrometheusScrape: 500 * time.Millisecond,
				},
				Out: out, Stay: stay, Users: users,
			})
			if err != nil {
				return err
			}
			if r := sum.Rollout; withProm && (r == nil || r.Good != rollout.Promoted || r.Bad != rollout.RolledBack || r.GoodFailed != 0 || r.FailedAfter != 0) {
				return fmt.Errorf("the progressive-delivery chapter did not hold (see above)")
			}
			if sum.OptIn.ByVersion["v2"] != 20 || !sum.VerifyOK || sum.StickyMismatch != 0 || sum.Transfers != 5 {
				return fmt.Errorf("the demo's story did not hold (see above)")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&binDir, "bin-dir", "bin", "directory holding filters/<name>.wasm (make filters)")
	fl.StringVar(&policyDir, "policy-dir", "policies/examples", "policy files to apply")
	fl.StringVar(&workDir, "work-dir", "", "where processes keep state and logs (default: a new temp dir)")
	fl.BoolVar(&stay, "stay", false, "keep everything running after the story, until Ctrl-C")
	fl.BoolVar(&keep, "keep", false, "keep the work dir (WAL, logs) at exit")
	fl.BoolVar(&mtls, "mtls", true, "mTLS gateway -> upstreams with Consul Connect certificates (SDS to the gateway, Connect-native upstreams); --mtls=false for plain HTTP")
	fl.BoolVar(&verbose, "verbose", false, "copy every process's output to stderr")
	fl.BoolVar(&prom, "prometheus", true, "run the progressive-delivery chapter with a real Prometheus (Debian's prometheus package, or $MESHWARDEN_PROMETHEUS); skipped with a note when none is installed")
	fl.IntVar(&users, "users", 200, "distinct users in the sticky-split demonstration")
	logs.RegisterFormatLevel(fl) // passed to every process it starts
	return cmd
}
