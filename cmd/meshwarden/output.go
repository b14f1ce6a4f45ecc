package main

import (
	"context"
	"encoding/json"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/preview"
)

// writeJSON writes v as indented JSON: the -o json output of every command.
func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// planeCLI is what a command asking the plane's admin API is given: the
// plane's address, the credentials (planeFlags) and the output format.
type planeCLI struct {
	plane, format string
	po            auth.ClientOptions
}

// planeFlags adds --plane, whose token needs the permission needs, and the
// credentials; a command with an output format adds its flag (o.format).
func (o *planeCLI) planeFlags(cmd *cobra.Command, needs string) {
	cmd.Flags().StringVar(&o.plane, "plane", defaultPlane(), "control plane admin address (host:port or https URL; $MESHWARDEN_PLANE); needs "+needs)
	planeFlags(cmd, &o.po)
}

// client returns an authenticated client of the plane's admin API.
func (o *planeCLI) client() (*preview.PlaneClient, error) { return planeClient(o.plane, o.po) }

// showFromPlane asks the plane of o with get and prints the answer to cmd's
// output: indented JSON when o.format is "json", else with text. It returns
// the answer, for the command's exit status.
func showFromPlane[T any](cmd *cobra.Command, o *planeCLI,
	get func(*preview.PlaneClient, context.Context) (T, error), text func(io.Writer, T) error) (T, error) {
	var zero T
	c, err := o.client()
	if err != nil {
		return zero, err
	}
	v, err := get(c, cmd.Context())
	if err != nil {
		return zero, err
	}
	out := cmd.OutOrStdout()
	if o.format == "json" {
		return v, writeJSON(out, v)
	}
	return v, text(out, v)
}
