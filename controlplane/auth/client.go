package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/pemcert"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ClientOptions say how a proxy or the CLI reaches the plane.
type ClientOptions struct {
	// CAFile holds the PEM roots of the mesh CA (Consul Connect's roots)
	// that the plane's certificate must chain to.
	CAFile string
	// Token is a Consul ACL token; TokenFile, if set, is read instead at
	// every call (so a rotated token file takes effect without restart).
	Token, TokenFile string
	// Insecure dials without TLS and sends no token: only for a plane run
	// with --insecure-dev, and only to a loopback address.
	Insecure bool
}

// Validate says what is missing, in flag terms.
func (o ClientOptions) Validate(target string) error {
	if o.Insecure {
		for _, addr := range strings.Split(target, ",") {
			addr = strings.TrimSpace(addr)
			host, _, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://"))
			if err != nil {
				return fmt.Errorf("plane address %q: %w", addr, err)
			}
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("an insecure (plaintext, anonymous) connection is refused to %s: it is for a --insecure-dev plane on loopback only", addr)
			}
		}
		return nil
	}
	if o.CAFile == "" {
		return errors.New("no CA file: give the mesh CA roots the plane's certificate chains to (--ca-file / --xds-ca-file; Consul's roots: curl $CONSUL_HTTP_ADDR/v1/agent/connect/ca/roots)")
	}
	if o.Token == "" && o.TokenFile == "" {
		return errors.New("no Consul ACL token: give --token-file or set CONSUL_HTTP_TOKEN (a proxy's token needs service:write on its service; an operator's operator:read / mesh:read / mesh:write)")
	}
	return nil
}

// token returns the current token.
func (o ClientOptions) token() (string, error) {
	if o.TokenFile == "" {
		return o.Token, nil
	}
	b, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", o.TokenFile)
	}
	return t, nil
}

// PlaneTLS returns a client TLS config that accepts only a server whose
// certificate chains to the roots in caFile and carries the control
// plane's SPIFFE id (…/svc/meshwarden-controlplane). Connect leaves carry
// no DNS name, so the SPIFFE id is what is checked, as Envoy does with
// match_typed_subject_alt_names. The file is read again at every
// handshake, so a refreshed bundle (after a Connect root rotation) takes
// effect on the next connection without a restart.
func PlaneTLS(caFile string) (*tls.Config, error) {
	return ServiceTLS(caFile, meshnames.PlaneServiceName, "control plane", false)
}

// ServiceTLS returns a client config that trusts a mesh service: its
// certificate chains to the roots in caFile (read again at every handshake)
// and carries a SPIFFE id ending in /svc/<service>, or, with hostOK, names
// the host dialled (a service with a certificate of its own). who names the
// service in errors.
func ServiceTLS(caFile, service, who string, hostOK bool) (*tls.Config, error) {
	if _, err := readPool(caFile); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified in VerifyConnection: chain to the file's roots, SPIFFE id
		// of the service (or, with hostOK, the host name).
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("the %s sent no certificate", who)
			}
			pool, err := readPool(caFile)
			if err != nil {
				return err
			}
			leaf := cs.PeerCertificates[0]
			if err := pemcert.VerifyChain(cs.PeerCertificates, pool, time.Time{}); err != nil {
				return fmt.Errorf("the %s's certificate does not chain to the CA file %s: %w", who, caFile, err)
			}
			for _, u := range leaf.URIs {
				if u.Scheme == "spiffe" && strings.HasSuffix(u.Path, "/svc/"+service) {
					return nil
				}
			}
			if hostOK {
				return leaf.VerifyHostname(cs.ServerName)
			}
			return fmt.Errorf("the server's certificate is not the %s's (no SPIFFE id ending in /svc/%s)", who, service)
		},
	}, nil
}

func readPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// DialOptions returns the gRPC options for an xDS client of the plane.
func (o ClientOptions) DialOptions() ([]grpc.DialOption, error) {
	if o.Insecure {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	cfg, err := PlaneTLS(o.CAFile)
	if err != nil {
		return nil, err
	}
	if _, err := o.token(); err != nil {
		return nil, err
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithPerRPCCredentials(tokenCreds{o}),
	}, nil
}

// tokenCreds sends the token as x-consul-token on every stream, over TLS only.
type tokenCreds struct{ o ClientOptions }

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.o.token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"x-consul-token": tok}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return true }

// HTTPClient returns a client for the plane's admin API that verifies the
// plane's certificate and sends the token on every request.
func (o ClientOptions) HTTPClient() (*http.Client, error) {
	if o.Insecure {
		return &http.Client{Timeout: 2 * time.Minute}, nil
	}
	cfg, err := PlaneTLS(o.CAFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Timeout: 2 * time.Minute, Transport: tokenTransport{o: o, next: tr}}, nil
}

type tokenTransport struct {
	o    ClientOptions
	next http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.o.token()
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("X-Consul-Token", tok)
	return t.next.RoundTrip(r)
}
