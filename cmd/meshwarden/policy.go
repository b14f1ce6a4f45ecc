package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newPolicyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "policy",
		Short: "Validate, diff and apply policy files",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("policy is not built yet")
		},
	}
}
