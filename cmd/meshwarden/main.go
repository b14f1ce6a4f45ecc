// Command meshwarden is the one binary of Meshwarden: the control plane, the
// gateway, the audit collector and the tools security teams and auditors use.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCmd().ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshwarden:", err)
	}
	stop()
	os.Exit(exitStatus(err))
}

// exitStatus maps err to the documented exit statuses (package exitcode):
// cobra's own complaints about unknown commands are usage errors too.
func exitStatus(err error) int {
	if err != nil && strings.HasPrefix(err.Error(), "unknown command ") {
		return exitcode.Usage
	}
	return exitcode.Of(err)
}

// markUsageErrors makes flag-parsing and argument-count errors of every
// command usage errors (exit 2), naming the command's --help.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitcode.Usagef("%w%s (see '%s --help')", err, suggestFlag(c, err), c.CommandPath())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return exitcode.Usagef("%w (see '%s --help')", err, cmd.CommandPath())
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "meshwarden",
		Short: "A financial-grade service mesh, extensible with WebAssembly",
		Long: `Meshwarden runs a Consul-backed xDS control plane, an edge gateway and
proxy-wasm filters (lane dyeing, audit capture, trace propagation) that run
the same in Envoy sidecars and in the gateway.

Start here:
  meshwarden demo                     bring everything up on this machine
  meshwarden controlplane --help      serve xDS from Consul and policy files
  meshwarden gateway --help           run the edge gateway
  meshwarden policy validate DIR      check policy files before applying them
  meshwarden audit verify --dir DIR   prove an audit trail was not altered

Exit status: 0 success; 1 a check found something (audit verify failed,
policy validate found errors, policy diff --exit-code found changes);
2 usage (unknown command or flag, missing argument); 3 the command could
not do its job (a file, Consul or the plane could not be read or reached).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// An unknown subcommand gets "did you mean".
		SuggestionsMinimumDistance: 2,
	}
	root.AddCommand(
		newVersionCmd(),
		newControlPlaneCmd(),
		newGatewayCmd(),
		newPolicyCmd(),
		newRolloutCmd(),
		newAuditCmd(),
		newDemoCmd(),
		newProxyStatusCmd(),
		newProxyConfigCmd(),
		newHealthCmd(),
		newTraceCmd(),
		newPreflightCmd(),
		newProfileCmd(),
	)
	markUsageErrors(root)
	return root
}
