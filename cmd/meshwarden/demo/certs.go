package demo

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/certs"
)

// printCerts shows the certificates in use, each from where it is real:
// the Connect CA's roots from Consul; the gateway's leaf as the upstreams
// saw it on their latest mTLS handshake, beside what the plane serves over
// SDS (its meshwarden_cert_expiry_seconds series) and what the gateway holds
// (meshwarden_gateway_certificate_expiry_seconds); each upstream's own leaf
// from its certificate manager.
func printCerts(ctx context.Context, out io.Writer, st *Stack) {
	if !st.opts.MTLS {
		fmt.Fprintln(out, "  mTLS is off in this run (meshwarden demo --mtls=false); by default the gateway and the upstreams use Consul Connect certificates")
		return
	}
	now := time.Now()
	fmt.Fprintln(out, "  mTLS: gateway -> payments over Consul Connect certificates (SDS to the gateway, the agent to the Connect-native upstreams)")

	roots, _, err := st.ConsulAPI.Connect().CARoots((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		fmt.Fprintf(out, "  Connect CA roots: %v\n", err)
	} else {
		fmt.Fprintf(out, "  roots (trust domain %s):\n", roots.TrustDomain)
		for _, r := range roots.Roots {
			state := "inactive (kept for peers still holding leaves it signed)"
			if r.ID == roots.ActiveRootID {
				state = "active"
			}
			exp := "expiry unknown"
			if cs, err := certs.ParsePEMCertificates([]byte(r.RootCertPEM)); err == nil {
				exp = fmt.Sprintf("serial %s, expires %s (%s)", hex.EncodeToString(cs[0].SerialNumber.Bytes()), cs[0].NotAfter.UTC().Format(time.RFC3339), until(now, cs[0].NotAfter))
			}
			fmt.Fprintf(out, "    %s: %s, %s\n", r.Name, state, exp)
		}
	}

	opClient, err := st.AdminClient(st.OperatorTokenFile)
	if err != nil {
		fmt.Fprintf(out, "  (plane metrics unavailable: %v)\n", err)
		opClient = http.DefaultClient
	}
	planeLeaves := scrapeExpiry(ctx, opClient, st.AdminURL("/metrics"), "meshwarden_cert_expiry_seconds")
	gwHeld := scrapeExpiry(ctx, http.DefaultClient, "http://"+st.GatewayAdmin+"/metrics", "meshwarden_gateway_certificate_expiry_seconds")

	fmt.Fprintln(out, "  gateway leaf (client certificate presented to payments):")
	var seen *x509.Certificate
	var accepted, rejected int64
	for _, u := range st.Upstreams {
		h := u.Handshakes()
		accepted += h.Accepted
		rejected += h.Rejected
		if h.LastClient != nil && (seen == nil || h.LastClient.NotBefore.After(seen.NotBefore)) {
			seen = h.LastClient
		}
	}
	if seen != nil {
		printLeaf(out, "    ", spiffeOf(seen), hex.EncodeToString(seen.SerialNumber.Bytes()), seen.NotBefore, seen.NotAfter, now)
	} else {
		fmt.Fprintln(out, "    no handshake yet")
	}
	for _, s := range planeLeaves {
		if s.labels["kind"] == "leaf" && s.labels["name"] == meshnames.GatewayNodeCluster {
			fmt.Fprintf(out, "    the plane serves it over SDS as %s: serial %s, %s left\n", meshnames.LeafSecretName(meshnames.GatewayNodeCluster), s.labels["serial"], time.Duration(s.value*float64(time.Second)).Round(time.Second))
		}
	}
	for _, s := range gwHeld {
		if s.labels["secret"] == meshnames.LeafSecretName(meshnames.GatewayNodeCluster) {
			fmt.Fprintf(out, "    the gateway holds it: %s left\n", time.Duration(s.value*float64(time.Second)).Round(time.Second))
		}
	}

	fmt.Fprintln(out, "  upstream leaves (server certificates, each instance's own manager):")
	for _, u := range st.Upstreams {
		c := u.Certificate()
		if c == nil {
			fmt.Fprintf(out, "    %s: no certificate\n", u.ID())
			continue
		}
		fmt.Fprintf(out, "    %s at https://%s\n", u.ID(), u.Addr)
		printLeaf(out, "      ", c.SPIFFEID, c.Serial(), c.Leaf.NotBefore, c.NotAfter(), now)
		if err := u.Certs().Ready(); err != nil {
			fmt.Fprintf(out, "      NOT READY: %v\n", err)
		}
	}
	fmt.Fprintf(out, "  mTLS handshakes at the upstreams: %d accepted, %d refused (only %s is admitted)\n", accepted, rejected, st.GatewayID)
}

// printLeaf prints one leaf: id, serial, expiry and the Consul agent's
// renewal window (it re-signs at a random point between 60 % and 90 % of
// the lifetime, and at once after a root rotation).
func printLeaf(out io.Writer, indent, id, serial string, notBefore, notAfter, now time.Time) {
	life := notAfter.Sub(notBefore)
	from, to := notBefore.Add(life*6/10), notBefore.Add(life*9/10)
	fmt.Fprintf(out, "%s%s\n", indent, id)
	fmt.Fprintf(out, "%sserial %s, expires %s (%s), lifetime %s\n", indent, serial, notAfter.UTC().Format(time.RFC3339), until(now, notAfter), life.Round(time.Second))
	fmt.Fprintf(out, "%srenewed by the Consul agent between %s and %s (60–90 %% of its life), at once on a root rotation\n",
		indent, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
}

func until(now, t time.Time) string {
	d := t.Sub(now)
	switch {
	case d < 0:
		return "EXPIRED"
	case d > 48*time.Hour:
		return fmt.Sprintf("in %dd", int(d.Hours()/24))
	default:
		return "in " + d.Round(time.Second).String()
	}
}

// series is one sample of a scraped gauge.
type series struct {
	labels map[string]string
	value  float64
}

// scrapeExpiry reads metric's samples from a Prometheus text endpoint;
// errors yield no samples (the printout says what it found).
func scrapeExpiry(ctx context.Context, hc *http.Client, url, metric string) []series {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := httpget.Get(ctx, hc, url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	labelRE := regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)
	var out []series
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			continue
		}
		s := series{labels: map[string]string{}, value: v}
		for _, m := range labelRE.FindAllStringSubmatch(line[len(metric)+1:end], -1) {
			s.labels[m[1]] = m[2]
		}
		out = append(out, s)
	}
	return out
}
