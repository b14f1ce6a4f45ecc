package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newGatewayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gateway",
		Short: "Run the edge gateway (an xDS client hosting the .wasm filters)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("gateway is not built yet")
		},
	}
}
