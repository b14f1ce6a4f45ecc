package main

import (
	"github.com/spf13/cobra"

	auditcli "github.com/meshwarden/meshwarden/auditstore/cli"
)

// newAuditCmd mounts the audit commands (collector, verify, query, tail,
// keygen); their logic lives in auditstore/cli.
func newAuditCmd() *cobra.Command { return auditcli.NewCommand() }
