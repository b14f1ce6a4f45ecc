package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/internal/exitcode"
)

// profileKinds maps the command's profile names to /debug/pprof/ paths.
var profileKinds = map[string]string{
	"cpu": "profile", "heap": "heap", "allocs": "allocs", "goroutine": "goroutine",
	"mutex": "mutex", "block": "block", "threadcreate": "threadcreate", "trace": "trace",
}

// newProfileCmd fetches a runtime profile from the plane's or a gateway's
// authenticated /debug/pprof/.
func newProfileCmd() *cobra.Command {
	var (
		o                                 planeCLI
		gatewayAdmin, adminTokenFile, out string
		seconds                           int
	)
	cmd := &cobra.Command{
		Use:   "profile cpu|heap|allocs|goroutine|mutex|block|threadcreate|trace",
		Short: "Fetch a Go runtime profile from the plane or a gateway (authenticated)",
		Long: `Profile fetches a profile from /debug/pprof/ on the plane's admin API (its
certificate verified by chain and SPIFFE id, your token needs operator:read:
the same flags as proxy-status) or, with --gateway, from a gateway's admin
port (the bearer token of its --admin-token-file), and writes it to -o for
'go tool pprof'. Mutex and block profiles are sampled at the rates of the
process's --mutex-profile-fraction and --block-profile-rate.`,
		Example: `  meshwarden profile mutex -o mutex.pb.gz && go tool pprof -top mutex.pb.gz
  meshwarden profile cpu --seconds 10 --plane 10.0.0.5:18001 -o cpu.pb.gz
  meshwarden profile heap --gateway http://127.0.0.1:19000 --admin-token-file admin.token -o heap.pb.gz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, ok := profileKinds[args[0]]
			if !ok {
				return exitcode.Usagef("profile %q: give one of cpu, heap, allocs, goroutine, mutex, block, threadcreate, trace", args[0])
			}
			if out == "" {
				return exitcode.Usagef("-o FILE is required (profiles are binary; 'go tool pprof FILE' reads them)")
			}
			if seconds < 1 || seconds > 300 {
				return exitcode.Usagef("--seconds %d: give 1 to 300", seconds)
			}
			q := ""
			if path == "profile" || path == "trace" {
				q = fmt.Sprintf("?seconds=%d", seconds)
			}
			b, err := fetchProfile(cmd.Context(), &o, gatewayAdmin, adminTokenFile, "/debug/pprof/"+path+q)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes): go tool pprof %s\n", out, len(b), out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&gatewayAdmin, "gateway", "", "a gateway's admin URL (e.g. http://127.0.0.1:19000) instead of the plane")
	fl.StringVar(&adminTokenFile, "admin-token-file", "", "with --gateway: the file of the gateway's --admin-token-file")
	fl.IntVar(&seconds, "seconds", 5, "duration of a cpu profile or an execution trace")
	fl.StringVarP(&out, "output", "o", "", "file to write the profile to")
	o.planeFlags(cmd, "operator:read")
	return cmd
}

// fetchProfile GETs path from the gateway (bearer token) or the plane
// (its admin client: TLS by SPIFFE id and the Consul token).
func fetchProfile(ctx context.Context, o *planeCLI, gatewayAdmin, tokenFile, path string) ([]byte, error) {
	var hc *http.Client
	var url string
	hdr := http.Header{}
	if gatewayAdmin != "" {
		if tokenFile == "" {
			return nil, exitcode.Usagef("--gateway needs --admin-token-file (the gateway refuses profiles without its token)")
		}
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		hdr.Set("Authorization", "Bearer "+string(bytes.TrimSpace(tok)))
		hc, url = &http.Client{}, strings.TrimSuffix(gatewayAdmin, "/")+path
	} else {
		c, err := o.client()
		if err != nil {
			return nil, err
		}
		hc, url = c.HTTP, strings.TrimSuffix(c.Base, "/")+path
	}
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header = hdr
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}
