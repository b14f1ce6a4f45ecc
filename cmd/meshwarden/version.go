package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/internal/buildinfo"
)

// versionReport is `meshwarden version -o json`.
type versionReport struct {
	Client buildinfo.Info  `json:"client"`
	Plane  *buildinfo.Info `json:"plane,omitempty"`
	// PlaneError says why the plane's version is missing.
	PlaneError string `json:"plane_error,omitempty"`
}

func newVersionCmd() *cobra.Command {
	var o planeCLI
	var client bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client's and the plane's version, commit and Go toolchain",
		Long: `Version prints this binary's build (the release and commit the Makefile
stamps with -ldflags -X, the Go toolchain, the platform) and, as istioctl
does, the control plane's: GET /v1/status on --plane (operator:read, the
same credentials as proxy-status). A plane that cannot be reached or
refuses the credentials is reported on its line; the exit status stays 0
(use --client to skip the plane).`,
		Example: `  meshwarden version --client
  meshwarden version --plane 10.0.0.5:18001 --ca-file connect-ca.pem --token-file ops.token
  meshwarden version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := versionReport{Client: buildinfo.Get()}
			if !client {
				r.Plane, r.PlaneError = planeVersion(cmd, &o)
			}
			out := cmd.OutOrStdout()
			if o.format == "json" {
				return writeJSON(out, r)
			}
			fmt.Fprintln(out, r.Client)
			switch {
			case r.Plane != nil:
				fmt.Fprintf(out, "plane %s: %s\n", o.plane, r.Plane)
			case !client:
				fmt.Fprintf(out, "plane %s: %s\n", o.plane, r.PlaneError)
			}
			return nil
		},
	}
	o.planeFlags(cmd, "operator:read")
	cmd.Flags().BoolVar(&client, "client", false, "print this binary's version only, do not ask the plane")
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "text or json")
	return cmd
}

// planeVersion asks the plane for its build; on failure it returns why.
func planeVersion(cmd *cobra.Command, o *planeCLI) (*buildinfo.Info, string) {
	c, err := o.client()
	if err != nil {
		return nil, "not asked: " + err.Error()
	}
	raw, err := c.Status(cmd.Context())
	if err != nil {
		return nil, "unreachable: " + err.Error()
	}
	var st struct {
		Build *buildinfo.Info `json:"build"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Build == nil {
		return nil, "its status has no build information (a plane older than this client)"
	}
	return st.Build, ""
}
