package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newControlPlaneCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "controlplane",
		Short: "Serve xDS (ADS) to Envoy sidecars and gateways from Consul and policy files",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("controlplane is not built yet")
		},
	}
}
