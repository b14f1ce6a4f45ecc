// Command meshwarden is the one binary of Meshwarden: the control plane, the
// gateway, the audit collector and the tools security teams and auditors use.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "meshwarden:", err)
		os.Exit(1)
	}
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
  meshwarden audit verify --dir DIR   prove an audit trail was not altered`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCmd(),
		newControlPlaneCmd(),
		newGatewayCmd(),
		newPolicyCmd(),
		newAuditCmd(),
		newDemoCmd(),
	)
	return root
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "meshwarden", version)
		},
	}
}
