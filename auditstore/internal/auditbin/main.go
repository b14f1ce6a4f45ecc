// Command auditbin is `meshwarden` with only the audit commands mounted. The
// fault tests build it so they exercise the real CLI code
// (auditstore/cli) without depending on the rest of the binary compiling.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	auditcli "github.com/meshwarden/meshwarden/auditstore/cli"
	"github.com/meshwarden/meshwarden/internal/exitcode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{Use: "meshwarden", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(auditcli.NewCommand())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "meshwarden:", err)
		os.Exit(exitcode.Of(err))
	}
}
