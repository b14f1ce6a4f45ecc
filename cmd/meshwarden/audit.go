package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newAuditCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "audit",
		Short: "Run the audit collector; verify, tail and query audit trails",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("audit is not built yet")
		},
	}
}
