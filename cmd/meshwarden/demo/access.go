package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/testenv/proc"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/certs"
	"github.com/meshwarden/meshwarden/internal/pemcert"
)

// AccessResult is what the access step saw.
type AccessResult struct {
	// Listed and Unlisted are the statuses the listed caller (orders) and
	// an unlisted one (intruder) got from the ledger sidecar.
	Listed, Unlisted int
	// Record is the unlisted caller's ACCESS_DENIED audit record (JSON).
	Record string
	Err    string
}

// accessPolicyYAML admits orders (and the gateway) to ledger's /v1/ledger/**.
func accessPolicyYAML(idPrefix string) string {
	return `# Written by the demo's access step.
apiVersion: meshwarden.io/v1alpha1
kind: AccessPolicy
metadata:
  name: ledger-callers
spec:
  service: ledger
  rules:
    - name: orders-read
      action: allow
      from: [` + idPrefix + `orders, ` + idPrefix + `meshwarden-gateway]
      methods: [GET]
      paths: [/v1/ledger/**]
`
}

// accessStory shows service-to-service authorization with mTLS: an
// AccessPolicy for service ledger, enforced by the Go gateway running as
// ledger's inbound sidecar (it receives the RBAC filters Envoy would); the
// listed caller gets 200, an unlisted one 403 and an ACCESS_DENIED record.
func accessStory(ctx context.Context, st *Stack, out io.Writer) *AccessResult {
	res := &AccessResult{}
	fail := func(err error) *AccessResult {
		res.Err = err.Error()
		fmt.Fprintf(out, "  access step failed: %v\n", err)
		return res
	}
	prefix := strings.TrimSuffix(st.GatewayID, "meshwarden-gateway")
	policyFile := filepath.Join(st.PolicyDir, "access-ledger.yaml")
	if err := os.WriteFile(policyFile, []byte(accessPolicyYAML(prefix)), 0o644); err != nil {
		return fail(err)
	}
	defer os.Remove(policyFile)
	fmt.Fprintf(out, "  AccessPolicy ledger-callers: only %sorders (and the gateway) may GET /v1/ledger/**\n", prefix)

	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ledger "+r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = app.Serve(appLn) }()
	defer app.Close()
	listen, err := proc.FreeAddr()
	if err != nil {
		return fail(err)
	}
	admin, err := proc.FreeAddr()
	if err != nil {
		return fail(err)
	}
	args := []string{"gateway", "--service", "ledger",
		"--xds-address", st.XDSAddresses(), "--listen", listen, "--admin-addr", admin,
		"--local-app-port", strconv.Itoa(appLn.Addr().(*net.TCPAddr).Port),
		"--cache-dir", filepath.Join(st.opts.WorkDir, "ledger-sidecar-cache"), "--node-id", "ledger-sidecar-demo"}
	if st.opts.InsecurePlane {
		args = append(args, "--xds-insecure")
	} else {
		// Its own token: service:write on ledger (a token for another
		// service would be refused by the plane).
		tok, err := st.ServiceToken(ctx, "ledger")
		if err != nil {
			return fail(err)
		}
		tokFile := filepath.Join(st.opts.WorkDir, "ledger.token")
		if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
			return fail(err)
		}
		args = append(args, "--xds-ca-file", st.CAFile, "--token-file", tokFile)
	}
	args = append(args, st.opts.Logs.Args()...)
	side, err := proc.Start("ledger-sidecar", st.opts.Log, st.opts.Binary, args...)
	if err != nil {
		return fail(err)
	}
	defer side.Stop(5 * time.Second)
	fmt.Fprintf(out, "  ledger's inbound sidecar: meshwarden gateway --service ledger on %s (mTLS, RBAC from the plane)\n", listen)

	orders, err := leafClient(ctx, st.ConsulAPI, "orders")
	if err != nil {
		return fail(err)
	}
	intruder, err := leafClient(ctx, st.ConsulAPI, "intruder")
	if err != nil {
		return fail(err)
	}
	url := "https://" + listen + "/v1/ledger/entries"
	get := func(c *http.Client) (int, string) {
		code, body := httpget.Text(ctx, c, url)
		return code, strings.TrimSpace(body)
	}
	var body string
	if !waitFor(ctx, 90*time.Second, func() bool { res.Unlisted, body = get(intruder); return res.Unlisted == http.StatusForbidden }) {
		return fail(fmt.Errorf("the sidecar did not enforce the policy in time: intruder got %d %q\n%s", res.Unlisted, body, side.Tail(10)))
	}
	var lbody string
	res.Listed, lbody = get(orders)
	fmt.Fprintf(out, "  GET as %sorders   -> %d %s\n", prefix, res.Listed, lbody)
	fmt.Fprintf(out, "  GET as %sintruder -> %d %s\n", prefix, res.Unlisted, body)

	waitFor(ctx, 15*time.Second, func() bool {
		o, err := runCmd(ctx, st.opts.Binary, "audit", "query", "--dir", st.AuditDir, "--op-type", "ACCESS_DENIED")
		if err != nil {
			return false
		}
		for _, line := range strings.Split(o, "\n") {
			var ev struct{ Subject string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Subject == prefix+"intruder" {
				res.Record = line
				return true
			}
		}
		return false
	})
	if res.Record == "" {
		return fail(errors.New("no ACCESS_DENIED record for the intruder in the audit log"))
	}
	var ev struct {
		Seq      uint64 `json:"seq"`
		OpType   string `json:"op_type"`
		Subject  string `json:"subject"`
		Resource string `json:"resource"`
		Method   string `json:"method"`
		Path     string `json:"path"`
		Status   int    `json:"status"`
	}
	_ = json.Unmarshal([]byte(res.Record), &ev)
	fmt.Fprintf(out, "  audit record #%d: op_type=%s subject=%s resource=%s %s %s -> %d\n",
		ev.Seq, ev.OpType, ev.Subject, ev.Resource, ev.Method, ev.Path, ev.Status)
	return res
}

// leafClient is an HTTPS client presenting service's Connect leaf and
// verifying the server's chain against the Connect roots (SPIFFE leaves
// carry no host name).
func leafClient(ctx context.Context, c *api.Client, service string) (*http.Client, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	l, _, err := c.Agent().ConnectCALeaf(service, q)
	if err != nil {
		return nil, fmt.Errorf("leaf for %s: %w", service, err)
	}
	cert, err := certs.NewCertificate(service, []byte(l.CertPEM), []byte(l.PrivateKeyPEM))
	if err != nil {
		return nil, err
	}
	list, _, err := c.Connect().CARoots(q)
	if err != nil {
		return nil, fmt.Errorf("connect roots: %w", err)
	}
	roots := x509.NewCertPool()
	for _, r := range list.Roots {
		roots.AppendCertsFromPEM([]byte(r.RootCertPEM))
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates:          []tls.Certificate{*cert.TLS()},
		InsecureSkipVerify:    true, // the chain is verified below, without a host name
		VerifyPeerCertificate: pemcert.VerifyRaw(roots),
	}}}, nil
}
