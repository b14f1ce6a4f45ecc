package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/controlplane/preview"
	"github.com/meshwarden/meshwarden/internal/exitcode"
)

// newProxyStatusCmd is istioctl's proxy-status for Meshwarden: every proxy
// the plane serves and whether it runs the configuration the plane sent.
func newProxyStatusCmd() *cobra.Command {
	var o planeCLI
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "List the proxies the plane serves and whether they run what it sent",
		Long: `Proxy-status asks the plane (GET /v1/nodes, operator:read) for every
connected proxy: its node id and node.cluster, whether it is a gateway or a
sidecar, its open streams, the configuration version the plane sent and the
one the proxy acknowledged:

  SYNCED     the proxy acknowledged the version the plane sent
  NOT ACKED  nothing acknowledged yet (just connected, or still loading)
  STALE      the proxy runs an older version; a NACK or a slow proxy
  ERROR      the plane cannot build this proxy's configuration (see ERROR)

Exit status 1 when any proxy is not SYNCED (for scripts), 0 otherwise.`,
		Example: `  meshwarden proxy-status
  meshwarden proxy-status --plane 10.0.0.5:18001 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := showFromPlane(cmd, &o, (*preview.PlaneClient).NodeStatuses, printProxyStatus)
			if err != nil {
				return err
			}
			if n := notSynced(nodes); n > 0 {
				return exitcode.Finding(fmt.Errorf("%d of %d proxies are not SYNCED", n, len(nodes)))
			}
			return nil
		},
	}
	o.planeFlags(cmd, "operator:read")
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "text or json")
	return cmd
}

// syncState is a node's state as proxy-status shows it.
func syncState(n preview.NodeStatus) string {
	switch {
	case n.Error != "":
		return "ERROR"
	case n.GoodVersion == "":
		return "NOT ACKED"
	case n.GoodVersion == n.Version:
		return "SYNCED"
	default:
		return "STALE"
	}
}

func notSynced(nodes []preview.NodeStatus) int {
	n := 0
	for _, node := range nodes {
		if syncState(node) != "SYNCED" {
			n++
		}
	}
	return n
}

func printProxyStatus(w io.Writer, nodes []preview.NodeStatus) error {
	if len(nodes) == 0 {
		_, err := fmt.Fprintln(w, "no proxy is connected to this plane")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCLUSTER\tKIND\tSTREAMS\tSTATUS\tSENT\tACKED\tERROR")
	for _, n := range nodes {
		kind := "sidecar"
		if n.Gateway {
			kind = "gateway"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.ID, n.Cluster, kind, n.Streams, syncState(n),
			short(n.Version), short(n.GoodVersion), n.Error)
	}
	return tw.Flush()
}

func short(v string) string {
	if v == "" {
		return "-"
	}
	return v[:min(12, len(v))]
}

// proxyConfigTypes are the resource kinds of a config dump, by the names
// istioctl proxy-config uses.
var proxyConfigTypes = map[string]string{
	"listeners": "listeners", "listener": "listeners",
	"routes": "routes", "route": "routes",
	"clusters": "clusters", "cluster": "clusters",
	"endpoints": "endpoints", "endpoint": "endpoints",
	"secrets": "secrets", "secret": "secrets",
	"extensions": "extension_configs", "ecds": "extension_configs", "extension_configs": "extension_configs",
	"all": "",
}

func newProxyConfigCmd() *cobra.Command {
	var o planeCLI
	cmd := &cobra.Command{
		Use:   "proxy-config NODE [listeners|routes|clusters|endpoints|secrets|extensions|all]",
		Short: "Show the xDS resources the plane serves one proxy",
		Long: `Proxy-config prints what the plane currently serves NODE (GET
/v1/config_dump, mesh:read), all of it or one kind. Private keys are always
redacted. NODE is a node id as proxy-status lists it.`,
		Example: `  meshwarden proxy-config gateway-1 routes
  meshwarden proxy-config payments-sidecar-1 clusters -o json`,
		Args: cobra.RangeArgs(1, 2),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"listeners", "routes", "clusters", "endpoints", "secrets", "extensions", "all"}, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := ""
			if len(args) == 2 {
				k, ok := proxyConfigTypes[strings.ToLower(args[1])]
				if !ok {
					return exitcode.Usagef("unknown resource kind %q: use listeners, routes, clusters, endpoints, secrets, extensions or all", args[1])
				}
				kind = k
			}
			if o.format != "yaml" && o.format != "json" {
				return exitcode.Usagef("--output %q: use yaml or json", o.format)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			b, err := c.ConfigDumpYAML(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var dump map[string]any
			if err := yaml.Unmarshal(b, &dump); err != nil {
				return fmt.Errorf("config_dump of %s: %w", args[0], err)
			}
			var v any = dump
			if kind != "" {
				v = dump[kind]
				if v == nil {
					v = []any{}
				}
			}
			return writeAs(cmd.OutOrStdout(), v, o.format)
		},
	}
	o.planeFlags(cmd, "mesh:read")
	cmd.Flags().StringVarP(&o.format, "output", "o", "yaml", "yaml or json")
	return cmd
}

func writeAs(w io.Writer, v any, format string) error {
	if format == "json" {
		return writeJSON(w, v)
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
