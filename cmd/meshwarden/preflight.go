package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// preflightFlags name what a proxy (gateway or sidecar) needs before it
// starts: Consul, the plane, its credential and certificate, the collector.
type preflightFlags struct {
	consul, xdsAddr, caFile, tokenFile, service string
	collector, collectorCA, format              string
	insecure                                    bool
	minValidity, timeout                        time.Duration
	skip                                        []string
}

// checkResult is one line of the report.
type checkResult struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// preflightChecks are the checks in report order.
var preflightChecks = []string{"consul", "plane", "credential", "certificate", "audit"}

func newPreflightCmd() *cobra.Command {
	var f preflightFlags
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Check that what a proxy needs is there: Consul, the plane, its token and certificate, the audit collector",
		Long: `Preflight checks, within --timeout, what a gateway or sidecar needs before
it starts, and prints one line per check; run it from an init container or
a systemd ExecStartPre= so a proxy never starts into a broken mesh:

  consul       the agent answers and has a leader
  plane        the xDS address accepts TLS with the control plane's certificate
               (chains to --xds-ca-file, SPIFFE id …/svc/meshwarden-controlplane)
  credential   the token is valid and holds service:write on --service
               (Consul issues that service's leaf certificate with it)
  certificate  that leaf is valid for at least --min-cert-validity
  audit        the audit collector's /healthz answers (--audit-collector, or the
               healthy meshwarden-audit instances registered in Consul)

Exit status 0 when every check passes; 1 naming the checks that failed;
2 for bad flags. --skip leaves out checks that do not apply (e.g. audit).`,
		Example: `  meshwarden preflight --xds-ca-file connect-ca.pem --token-file gateway.token
  meshwarden preflight --service ledger --token-file ledger.token --xds-ca-file connect-ca.pem --skip audit
  # systemd: ExecStartPre=/usr/local/bin/meshwarden preflight --timeout 20s ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPreflight(cmd.Context(), cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.consul, "consul", envOr("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), "Consul agent HTTP address ($CONSUL_HTTP_ADDR)")
	fl.StringVar(&f.xdsAddr, "xds-address", "127.0.0.1:18000", "control plane ADS address the proxy will use (the first of a comma-separated list is checked)")
	fl.StringVar(&f.caFile, "xds-ca-file", os.Getenv("MESHWARDEN_XDS_CA_FILE"), "PEM roots of the mesh CA the plane's certificate must chain to ($MESHWARDEN_XDS_CA_FILE)")
	fl.BoolVar(&f.insecure, "xds-insecure", false, "DEVELOPMENT ONLY: the plane serves plaintext (--insecure-dev); only reachability is checked")
	fl.StringVar(&f.tokenFile, "token-file", os.Getenv("CONSUL_HTTP_TOKEN_FILE"), "file holding the proxy's Consul ACL token ($CONSUL_HTTP_TOKEN_FILE, or the token in $CONSUL_HTTP_TOKEN)")
	fl.StringVar(&f.service, "service", meshnames.GatewayNodeCluster, "the service the proxy runs as (its token needs service:write on it)")
	fl.DurationVar(&f.minValidity, "min-cert-validity", time.Hour, "fail when the proxy's leaf certificate expires sooner than this")
	fl.StringVar(&f.collector, "audit-collector", "", "audit collector address (host:port or URL); empty: the healthy meshwarden-audit instances in Consul")
	fl.StringVar(&f.collectorCA, "audit-ca-file", "", "PEM roots that verify an https collector (default: --xds-ca-file, for a collector serving a Connect leaf with SPIFFE id …/svc/meshwarden-audit)")
	fl.StringSliceVar(&f.skip, "skip", nil, "checks to leave out: "+strings.Join(preflightChecks, ", "))
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "deadline of all the checks together")
	fl.StringVarP(&f.format, "output", "o", "text", "text or json")
	return cmd
}

func runPreflight(ctx context.Context, out io.Writer, f preflightFlags) error {
	skip := map[string]bool{}
	for _, s := range f.skip {
		if !slices.Contains(preflightChecks, s) {
			return exitcode.Usagef("--skip %s: give one of %s", s, strings.Join(preflightChecks, ", "))
		}
		skip[s] = true
	}
	if f.format != "text" && f.format != "json" {
		return exitcode.Usagef("-o %s: give text or json", f.format)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	results := f.run(ctx, skip)
	var failed []string
	for _, r := range results {
		if !r.OK {
			failed = append(failed, r.Check)
		}
	}
	if f.format == "json" {
		if err := writeJSON(out, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			fmt.Fprintf(out, "%-4s  %-11s  %s\n", map[bool]string{true: "OK", false: "FAIL"}[r.OK], r.Check, r.Detail)
		}
	}
	if len(failed) > 0 {
		return exitcode.Finding(fmt.Errorf("preflight: %d of %d checks failed: %s", len(failed), len(results), strings.Join(failed, ", ")))
	}
	return nil
}

// run performs the checks not skipped, concurrently, and returns their
// results in report order.
func (f preflightFlags) run(ctx context.Context, skip map[string]bool) []checkResult {
	token := os.Getenv("CONSUL_HTTP_TOKEN")
	tokenErr := error(nil)
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		token, tokenErr = strings.TrimSpace(string(b)), err
	}
	client, clientErr := api.NewClient(&api.Config{Address: f.consul, Token: token})
	got := map[string]checkResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	set := func(r checkResult) {
		mu.Lock()
		got[r.Check] = r
		mu.Unlock()
	}
	run := func(skipped bool, fn func() []checkResult) {
		if skipped {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range fn() {
				set(r)
			}
		}()
	}
	run(skip["consul"], func() []checkResult { return []checkResult{checkConsul(ctx, f.consul, client, clientErr)} })
	run(skip["plane"], func() []checkResult { return []checkResult{f.checkPlane(ctx)} })
	run(skip["credential"] && skip["certificate"], func() []checkResult {
		return f.checkCredential(ctx, client, clientErr, token, tokenErr)
	})
	run(skip["audit"], func() []checkResult { return []checkResult{f.checkCollector(ctx, client, clientErr)} })
	wg.Wait()
	var out []checkResult
	for _, name := range preflightChecks {
		if r, ok := got[name]; ok && !skip[name] {
			out = append(out, r)
		}
	}
	return out
}

func checkConsul(ctx context.Context, addr string, c *api.Client, err error) checkResult {
	r := checkResult{Check: "consul"}
	if err != nil {
		r.Detail = fmt.Sprintf("%s: %v: fix --consul", addr, err)
		return r
	}
	leader, err := c.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	switch {
	case err != nil:
		r.Detail = fmt.Sprintf("%s: %v: start the agent or fix --consul / $CONSUL_HTTP_ADDR", addr, err)
	case leader == "":
		r.Detail = addr + ": no leader elected yet: wait for the servers to form a quorum"
	default:
		r.OK, r.Detail = true, fmt.Sprintf("%s: leader %s", addr, leader)
	}
	return r
}

// checkPlane completes a TLS handshake with the plane's xDS address and
// verifies its certificate as the proxy will.
func (f preflightFlags) checkPlane(ctx context.Context) checkResult {
	r := checkResult{Check: "plane"}
	addr := strings.TrimSpace(strings.Split(f.xdsAddr, ",")[0])
	var d net.Dialer
	if f.insecure {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			r.Detail = fmt.Sprintf("%s: %v: start the plane or fix --xds-address", addr, err)
			return r
		}
		conn.Close()
		r.OK, r.Detail = true, addr+": reachable (plaintext, --xds-insecure: identity not checked)"
		return r
	}
	if f.caFile == "" {
		r.Detail = "no --xds-ca-file: give the mesh CA roots (curl $CONSUL_HTTP_ADDR/v1/agent/connect/ca/roots)"
		return r
	}
	cfg, err := auth.PlaneTLS(f.caFile)
	if err != nil {
		r.Detail = fmt.Sprintf("--xds-ca-file: %v", err)
		return r
	}
	cfg.NextProtos = []string{"h2"}
	conn, err := (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		r.Detail = fmt.Sprintf("%s: %v", addr, err)
		return r
	}
	leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	conn.Close()
	r.OK, r.Detail = true, fmt.Sprintf("%s: TLS with the control plane's certificate (expires %s)", addr, leaf.NotAfter.UTC().Format(time.RFC3339))
	return r
}

// checkCredential makes the plane's own decision about the proxy's token
// (controlplane/auth against Consul: a valid, unexpired token holding
// service:write on --service), then fetches that service's leaf with it and
// checks the leaf's lifetime.
func (f preflightFlags) checkCredential(ctx context.Context, c *api.Client, clientErr error, token string, tokenErr error) []checkResult {
	cred, cert := checkResult{Check: "credential"}, checkResult{Check: "certificate"}
	fail := func(format string, args ...any) []checkResult {
		cred.Detail = fmt.Sprintf(format, args...)
		cert.Detail = "not checked: no usable credential"
		return []checkResult{cred, cert}
	}
	switch {
	case tokenErr != nil:
		return fail("--token-file: %v", tokenErr)
	case clientErr != nil:
		return fail("consul: %v", clientErr)
	case token == "":
		return fail("no token: give --token-file (a token with service:write on %s) or set CONSUL_HTTP_TOKEN", f.service)
	}
	authn, err := auth.New(auth.Options{Consul: &api.Config{Address: f.consul}})
	if err != nil {
		return fail("%v", err)
	}
	p, err := authn.Authenticate(ctx, token)
	if err != nil {
		return fail("%v: check the token file", err)
	}
	if err := authn.Authorize(ctx, token, auth.ServiceWrite(f.service)); err != nil {
		return fail("%v: give the token service:write on %s, e.g. consul acl token create -service-identity %s", err, f.service, f.service)
	}
	cred.OK, cred.Detail = true, fmt.Sprintf("%s holds service:write on %s", p, f.service)
	leaf, _, err := c.Agent().ConnectCALeaf(f.service, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		cert.Detail = fmt.Sprintf("leaf certificate of %s: %v", f.service, err)
		return []checkResult{cred, cert}
	}
	cert.OK, cert.Detail = leafValidity(leaf.CertPEM, f.minValidity)
	return []checkResult{cred, cert}
}

// leafValidity says whether the PEM leaf is valid for at least min.
func leafValidity(certPEM string, min time.Duration) (bool, string) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return false, "Consul answered a leaf with no PEM certificate"
	}
	x, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false, fmt.Sprintf("leaf certificate: %v", err)
	}
	left := time.Until(x.NotAfter)
	id := ""
	if len(x.URIs) > 0 {
		id = x.URIs[0].String() + " "
	}
	detail := fmt.Sprintf("%sexpires %s (in %s)", id, x.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Minute))
	if left < min {
		return false, detail + fmt.Sprintf(": less than --min-cert-validity %s; check the CA (consul connect ca get-config) and the plane's certificate alarms", min)
	}
	return true, detail
}

// checkCollector GETs /healthz of --audit-collector, or of the healthy
// meshwarden-audit instances in Consul (one answering is enough).
func (f preflightFlags) checkCollector(ctx context.Context, c *api.Client, clientErr error) checkResult {
	r := checkResult{Check: "audit"}
	var urls []string
	switch {
	case f.collector != "" && strings.Contains(f.collector, "://"):
		urls = []string{strings.TrimSuffix(f.collector, "/") + "/healthz"}
	case f.collector != "":
		urls = []string{"http://" + f.collector + "/healthz"}
	case clientErr != nil:
		r.Detail = fmt.Sprintf("no --audit-collector and no Consul to look it up in: %v", clientErr)
		return r
	default:
		entries, _, err := c.Health().Service(meshnames.CollectorServiceName, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			r.Detail = fmt.Sprintf("look up %s in Consul: %v", meshnames.CollectorServiceName, err)
			return r
		}
		for _, e := range entries {
			scheme := e.Service.Meta["scheme"]
			if scheme == "" {
				scheme = "http"
			}
			urls = append(urls, fmt.Sprintf("%s://%s/healthz", scheme, net.JoinHostPort(e.Service.Address, fmt.Sprint(e.Service.Port))))
		}
		if len(urls) == 0 {
			r.Detail = fmt.Sprintf("no healthy %s instance in Consul: start the collector with --consul, or give --audit-collector", meshnames.CollectorServiceName)
			return r
		}
	}
	ca := f.collectorCA
	if ca == "" {
		ca = f.caFile // a collector with a Connect leaf chains to the mesh CA
	}
	hc, err := collectorClient(ca)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	var errs []string
	for _, u := range urls {
		if err := getOK(ctx, hc, u); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		r.OK, r.Detail = true, u+": healthy"
		return r
	}
	r.Detail = strings.Join(errs, "; ")
	return r
}

// collectorClient verifies an https collector as a proxy does: its
// certificate chains to caFile and either carries the SPIFFE id of
// meshwarden-audit (a Connect leaf, which names no host) or matches the
// host name dialled.
func collectorClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{}, nil
	}
	cfg, err := auth.ServiceTLS(caFile, meshnames.CollectorServiceName, "collector", true)
	if err != nil {
		return nil, fmt.Errorf("CA file for the collector: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

func getOK(ctx context.Context, hc *http.Client, u string) error {
	resp, err := httpget.OK(ctx, hc, u)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
