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

// showFromPlane asks the plane at plane (credentials po) with get and
// prints the answer to cmd's output: indented JSON when format is "json",
// else with text. It returns the answer, for the command's exit status.
func showFromPlane[T any](cmd *cobra.Command, plane string, po auth.ClientOptions, format string,
	get func(*preview.PlaneClient, context.Context) (T, error), text func(io.Writer, T) error) (T, error) {
	var zero T
	c, err := planeClient(plane, po)
	if err != nil {
		return zero, err
	}
	v, err := get(c, cmd.Context())
	if err != nil {
		return zero, err
	}
	out := cmd.OutOrStdout()
	if format == "json" {
		return v, writeJSON(out, v)
	}
	return v, text(out, v)
}
