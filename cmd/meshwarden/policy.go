package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/controlplane/intentions"
	"github.com/meshwarden/meshwarden/controlplane/preview"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Validate, diff and apply policy files",
		Long: `Policy files are YAML documents (apiVersion meshwarden.io/v1alpha1) in one
directory: DyePolicy, AuditPolicy, TracePolicy, CanaryRoute, FilterRelease,
CertificatePolicy, AccessPolicy, ResiliencePolicy, Rollout (progressive
delivery, steered with meshwarden rollout) and CompliancePolicy (service
tags, residency). See policies/README.md.

  meshwarden policy validate policies/ --consul 127.0.0.1:8500
  meshwarden policy diff policies/ --plane 127.0.0.1:18001
  meshwarden policy diff policies/ --base old-policies/ --consul 127.0.0.1:8500
  meshwarden policy apply policies/ --plane 127.0.0.1:18001 --ca-file connect-ca.pem --token-file alice.token
  meshwarden policy status --plane 127.0.0.1:18001
  meshwarden policy log`,
	}
	cmd.AddCommand(newPolicyValidateCmd(), newPolicyDiffCmd(), newPolicyApplyCmd(), newPolicyStatusCmd(), newPolicyLogCmd(), newPolicyHistoryCmd())
	return cmd
}

// catalogFrom reads the Consul catalog when addr is set, else returns nil
// (cross-references are then not checked).
func catalogFrom(cmd *cobra.Command, addr string) (*ir.Catalog, error) {
	if addr == "" {
		return nil, nil
	}
	cfg := api.DefaultConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	return preview.CatalogFromConsul(cmd.Context(), c)
}

// intentionsFrom reads the Consul intentions once when addr is set and
// translates them as the plane does (see controlplane/intentions).
func intentionsFrom(cmd *cobra.Command, addr string) ([]ir.AccessPolicy, []string, error) {
	if addr == "" {
		return nil, nil, nil
	}
	cfg := api.DefaultConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	entries, _, err := c.ConfigEntries().List(api.ServiceIntentions, (&api.QueryOptions{}).WithContext(cmd.Context()))
	if err != nil {
		return nil, nil, fmt.Errorf("read Consul intentions from %s: %w", addr, err)
	}
	ps, warnings := intentions.Translate(entries)
	return ps, warnings, nil
}

// printDiagnostics writes errors and warnings, one per line.
func printDiagnostics(w io.Writer, d *policies.Diagnostics) {
	for _, l := range d.All() {
		fmt.Fprintln(w, l)
	}
}

func newPolicyValidateCmd() *cobra.Command {
	var consul, format string
	cmd := &cobra.Command{
		Use:   "validate DIR",
		Short: "Check policy files; exit non-zero on any error",
		Long: `Decodes every *.yaml file of DIR strictly and reports every error as
file:line:column: field.path: what to change. With --consul, subsets are
checked against the instances registered in Consul (a selector no instance
carries is an error; a service not in Consul is a warning).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, err := catalogFrom(cmd, consul)
			if err != nil {
				return err
			}
			ps, diags, err := policies.LoadDir(args[0], cat)
			if diags == nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				if e := writeJSON(out, diags); e != nil {
					return e
				}
			} else {
				printDiagnostics(out, diags)
			}
			if err != nil {
				return exitcode.Finding(fmt.Errorf("%s: %d error(s): the policy set would be rejected", args[0], len(diags.Errors)))
			}
			if format != "json" {
				fmt.Fprintf(out, "OK: %d file(s), revision %s: %d route(s), %d filter(s), %d access rule(s), %d resilience policy(ies), %d compliance policy(ies), %d rollout(s), %d warning(s)\n",
					len(ps.Sources), ps.Revision[:16], len(ps.Routes), len(ps.Filters), len(ps.Access), len(ps.Resilience), len(ps.Compliance), len(ps.Rollouts), len(diags.Warnings))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&consul, "consul", "", "Consul HTTP address (host:port) to check cross-references against")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

func newPolicyDiffCmd() *cobra.Command {
	var plane, consul, base, format string
	var exitCode bool
	var po auth.ClientOptions
	cmd := &cobra.Command{
		Use:   "diff DIR",
		Short: "Show per node which xDS resources DIR would change (nothing is applied)",
		Long: `With --plane, asks the running control plane to translate DIR without
applying it and compares the result with each node's current resources.

Without --plane, runs the translator locally: DIR against --base (another
policy directory; default: no policies) on the catalog read from --consul,
for the gateway and one sidecar per Consul service. Filters not pinned by a
FilterRelease show a placeholder module hash in local mode.

Access: an AccessPolicy becomes RBAC filters on the inbound listener of the
service's sidecars. Consul intentions (the plane's --intentions) govern the
services without an AccessPolicy; both modes include them — the plane its
intentions in force, a local diff those read once from --consul — so the diff
shows the effect of both sources.

Exit status: 0 whether or not something changes, or with --exit-code 0 when
nothing changes and 1 when something does (as git diff --exit-code);
2 for usage errors, 3 when the plane or Consul cannot be reached.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var rep *preview.Report
			if plane != "" {
				files, err := policies.ReadDir(args[0])
				if err != nil {
					return err
				}
				if _, diags, err := policies.LoadFiles(files, nil); err != nil {
					printDiagnostics(cmd.ErrOrStderr(), diags)
					return exitcode.Finding(fmt.Errorf("%s has errors: fix them before previewing", args[0]))
				}
				c, err := planeClient(plane, po)
				if err != nil {
					return err
				}
				rep, err = c.Diff(ctx, files)
				if err != nil {
					return err
				}
			} else {
				cat, err := catalogFrom(cmd, consul)
				if err != nil {
					return err
				}
				if cat == nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "note: no --plane and no --consul: translating on an empty catalog, so only the gateway is shown and routes to services appear only once they are in Consul")
				}
				cand, diags, err := policies.LoadDir(args[0], cat)
				if err != nil {
					printDiagnostics(cmd.ErrOrStderr(), diags)
					return exitcode.Finding(fmt.Errorf("%s has errors: fix them before previewing", args[0]))
				}
				cur := &ir.PolicySet{}
				if base != "" {
					var bd *policies.Diagnostics
					cur, bd, err = policies.LoadDir(base, cat)
					if err != nil {
						printDiagnostics(cmd.ErrOrStderr(), bd)
						return exitcode.Finding(fmt.Errorf("--base %s has errors", base))
					}
				}
				// Consul intentions apply to the services without an
				// AccessPolicy, before and after, as in the plane.
				ints, iwarn, err := intentionsFrom(cmd, consul)
				if err != nil {
					return err
				}
				cur, _ = intentions.Merge(cur, ints)
				var notes []string
				cand, notes = intentions.Merge(cand, ints)
				for _, n := range append(iwarn, notes...) {
					fmt.Fprintln(cmd.ErrOrStderr(), "note: intentions: "+n)
				}
				opts := localTranslateOptions()
				nodes := preview.DefaultNodes(cat)
				before, err := preview.Translate(cat, cur, nodes, opts)
				if err != nil {
					return fmt.Errorf("--base: %w", err)
				}
				after, err := preview.Translate(cat, cand, nodes, opts)
				if err != nil {
					return err
				}
				rep = preview.Compare(before, after)
			}
			var err error
			if format == "json" {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				err = rep.Format(cmd.OutOrStdout())
			}
			if err == nil && exitCode && rep.Changed() {
				err = exitcode.Finding(errors.New("the policy set would change the configuration above"))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit 1 when something would change, 0 when nothing would (for CI gates)")
	cmd.Flags().StringVar(&plane, "plane", os.Getenv("MESHWARDEN_PLANE"), "control plane admin address (host:port or https URL; $MESHWARDEN_PLANE); needs a token with mesh:read. Without it the diff is local")
	planeFlags(cmd, &po)
	cmd.Flags().StringVar(&consul, "consul", "", "Consul HTTP address, for a local diff without --plane")
	cmd.Flags().StringVar(&base, "base", "", "policy directory to compare against, for a local diff without --plane")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

// localTranslateOptions gives the translator a placeholder module server so
// a local preview can run without one.
func localTranslateOptions() translate.Options {
	o := translate.Options{ModuleBaseURL: "http://module-server.invalid/modules/", ModuleSHA256: map[string]string{}}
	for _, f := range filters.Order() {
		o.ModuleSHA256[f] = strings.Repeat("0", 64)
	}
	return o
}

// planeFlags adds how the CLI reaches the plane's admin API.
func planeFlags(cmd *cobra.Command, o *auth.ClientOptions) {
	fl := cmd.Flags()
	fl.StringVar(&o.CAFile, "ca-file", os.Getenv("MESHWARDEN_CA_FILE"), "PEM roots of the mesh CA the plane's certificate chains to (Consul Connect's roots; $MESHWARDEN_CA_FILE)")
	fl.StringVar(&o.TokenFile, "token-file", os.Getenv("CONSUL_HTTP_TOKEN_FILE"), "file holding your Consul ACL token ($CONSUL_HTTP_TOKEN_FILE, or the token itself in $CONSUL_HTTP_TOKEN)")
	fl.BoolVar(&o.Insecure, "insecure", false, "DEVELOPMENT ONLY: plain HTTP, no token, to a --insecure-dev plane on loopback")
}

// defaultPlane is $MESHWARDEN_PLANE, else the plane's default --admin-addr.
func defaultPlane() string {
	if p := os.Getenv("MESHWARDEN_PLANE"); p != "" {
		return p
	}
	return "127.0.0.1:18001"
}

// planeClient returns an authenticated client of the plane's admin API.
func planeClient(plane string, o auth.ClientOptions) (*preview.PlaneClient, error) {
	if o.TokenFile == "" {
		o.Token = os.Getenv("CONSUL_HTTP_TOKEN")
	}
	if err := o.Validate(plane); err != nil {
		return nil, err
	}
	hc, err := o.HTTPClient()
	if err != nil {
		return nil, err
	}
	base := plane
	if !strings.Contains(base, "://") {
		base = "https://" + base
		if o.Insecure {
			base = "http://" + plane
		}
	}
	return &preview.PlaneClient{Base: base, HTTP: hc}, nil
}

func defaultChangeLog() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "meshwarden-policy-changes.jsonl"
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "meshwarden", "policy-changes.jsonl")
}

func newPolicyApplyCmd() *cobra.Command {
	var plane, changelog, changelogKey string
	var po auth.ClientOptions
	cmd := &cobra.Command{
		Use:   "apply DIR",
		Short: "Apply DIR through the control plane and record the change",
		Long: `Validates DIR, previews it against the plane, posts it to
POST /v1/policies:apply and prints the accepted revision, or the errors the
plane rejected it with (the last good set keeps serving). Every accepted set
is recorded — who (the principal the plane authenticated from your token,
never a name you type), when, the revision and the diff — in the plane's
change log and in a local hash-chained one (--changelog); with
--changelog-key each change is followed by an Ed25519-signed checkpoint in
<changelog>.checkpoints, which 'meshwarden policy log --pubkey' verifies.
Your token needs mesh:write.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if plane == "" {
				return exitcode.Usagef("apply needs --plane: the control plane's admin address")
			}
			files, err := policies.ReadDir(args[0])
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(changelog), 0o700); err != nil {
				return fmt.Errorf("change log directory: %w", err)
			}
			log, err := policies.OpenChangeLog(changelog)
			if err != nil {
				return err
			}
			if changelogKey != "" {
				k, err := wal.LoadPrivateKey(changelogKey)
				if err != nil {
					return fmt.Errorf("--changelog-key: %w", err)
				}
				log.SetSigner(k)
			}
			c, err := planeClient(plane, po)
			if err != nil {
				return err
			}
			res, err := preview.ApplyRecorded(cmd.Context(), c, files, args[0], log)
			var diags *policies.Diagnostics
			if errors.As(err, &diags) {
				printDiagnostics(cmd.ErrOrStderr(), diags)
				return fmt.Errorf("%s: %d error(s): nothing was sent", args[0], len(diags.Errors))
			}
			var pe *preview.PlaneError
			if errors.As(err, &pe) {
				fmt.Fprintln(cmd.ErrOrStderr(), strings.TrimSpace(pe.Body))
				return fmt.Errorf("the control plane rejected the set (HTTP %d): the last good set keeps serving", pe.Status)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.DiffError != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: no preview diff: %v\n", res.DiffError)
			} else if err := res.Report.Format(out); err != nil {
				return err
			}
			fmt.Fprintf(out, "applied revision %s by %s; recorded as change #%d in %s\n", res.Result.Revision, res.Result.AppliedBy, res.Record.Seq, changelog)
			return nil
		},
	}
	cmd.Flags().StringVar(&plane, "plane", defaultPlane(), "control plane admin address (host:port or https URL; $MESHWARDEN_PLANE)")
	planeFlags(cmd, &po)
	cmd.Flags().StringVar(&changelog, "changelog", defaultChangeLog(), "hash-chained change log (JSONL)")
	cmd.Flags().StringVar(&changelogKey, "changelog-key", "", "Ed25519 private key `file` (PEM, 'meshwarden audit keygen') that signs a checkpoint after the change")
	return cmd
}

func newPolicyStatusCmd() *cobra.Command {
	var o planeCLI
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the plane's policy revision and its last rejection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.plane == "" {
				return exitcode.Usagef("status needs --plane: the control plane's admin address")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			b, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.format == "json" {
				var pretty bytes.Buffer
				if json.Indent(&pretty, b, "", "  ") == nil {
					b = append(pretty.Bytes(), '\n')
				}
				_, err = out.Write(b)
				return err
			}
			var st struct {
				PolicyRevision string    `json:"policy_revision"`
				Nodes          int       `json:"nodes"`
				LastBuild      time.Time `json:"last_build"`
				BuildError     string    `json:"build_error"`
				LastRejection  *struct {
					Time  time.Time `json:"time"`
					Kind  string    `json:"kind"`
					Node  string    `json:"node"`
					Error string    `json:"error"`
				} `json:"last_rejection"`
				Health *health.Status `json:"health"`
			}
			if err := json.Unmarshal(b, &st); err != nil {
				return fmt.Errorf("the plane's status is not JSON: %w", err)
			}
			rev := st.PolicyRevision
			if rev == "" {
				rev = "(none)"
			}
			fmt.Fprintf(out, "policy revision in force: %s\nnodes: %d\nlast build: %s\n", rev, st.Nodes, st.LastBuild.UTC().Format(time.RFC3339))
			if st.BuildError != "" {
				fmt.Fprintf(out, "build error: %s\n", st.BuildError)
			}
			if r := st.LastRejection; r != nil {
				fmt.Fprintf(out, "last rejection: %s %s", r.Time.UTC().Format(time.RFC3339), r.Kind)
				if r.Node != "" {
					fmt.Fprintf(out, " (node %s)", r.Node)
				}
				fmt.Fprintf(out, ":\n  %s\n", strings.ReplaceAll(r.Error, "\n", "\n  "))
			} else {
				fmt.Fprintln(out, "last rejection: none")
			}
			if st.Health != nil {
				fmt.Fprintln(out, "subset health:")
				printHealth(out, st.Health)
			}
			return nil
		},
	}
	o.planeFlags(cmd, "operator:read")
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text or json (the plane's status document)")
	return cmd
}

func newPolicyLogCmd() *cobra.Command {
	var changelog, pubkey string
	var showDiff, allowUnsigned bool
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Verify the change log's hash chain (and, with --pubkey, its signed checkpoints) and list the applied sets",
		Long: `Log verifies the change log's hash chain and lists the applied sets. With
--pubkey it also verifies the signed checkpoints in <changelog>.checkpoints
and fails closed: a rewritten and re-chained log, a log cut short, and
changes no signed checkpoint covers are errors (--allow-unsigned-tail turns
the last into a warning).`,
		Example: `  meshwarden policy log --changelog changes.jsonl --pubkey policy.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := policies.ReadChangeLog(changelog)
			var signed *policies.ChangeLogReport
			if err == nil && pubkey != "" {
				k, kerr := wal.LoadPublicKey(pubkey)
				if kerr != nil {
					return fmt.Errorf("--pubkey: %w", kerr)
				}
				signed, err = policies.VerifyChangeLog(changelog, k, allowUnsigned)
			}
			out := cmd.OutOrStdout()
			for _, r := range recs {
				fmt.Fprintf(out, "#%d %s %s revision %.16s from %s (hash %.16s)\n", r.Seq,
					timeOf(r.Timestamp), r.Subject, strings.TrimPrefix(r.Resource, "policyset:"), r.Path, r.Hash)
				if showDiff {
					fmt.Fprint(out, r.Diff)
				}
			}
			if err != nil {
				return err
			}
			if signed != nil {
				for _, w := range signed.Warnings {
					fmt.Fprintf(out, "warning: %s\n", w)
				}
				fmt.Fprintf(out, "OK: %d change(s), chain verified, %d signed checkpoint(s) match, last at change #%d\n", len(recs), signed.Checkpoints, signed.LastSigned)
				return nil
			}
			fmt.Fprintf(out, "OK: %d change(s), chain verified (signatures not checked: give --pubkey)\n", len(recs))
			return nil
		},
	}
	cmd.Flags().StringVar(&changelog, "changelog", defaultChangeLog(), "hash-chained change log (JSONL)")
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "Ed25519 public key `file` (PEM) that verifies the change log's signed checkpoints")
	cmd.Flags().BoolVar(&allowUnsigned, "allow-unsigned-tail", false, "with --pubkey: accept changes no signed checkpoint covers, as a warning")
	cmd.Flags().BoolVar(&showDiff, "diff", false, "print each change's diff")
	return cmd
}

func timeOf(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }
