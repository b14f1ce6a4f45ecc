package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/crypto/acme"
)

// ACMEIssuer obtains public certificates for the gateway's listener names
// from an ACME CA (RFC 8555) with the HTTP-01 challenge. The gateway (or
// any server on port 80 of the names) mounts [ACMEIssuer.HTTPHandler] so
// the CA can fetch the challenge responses.
type ACMEIssuer struct {
	opts   ACMEOptions
	client *acme.Client

	regOnce sync.Mutex
	reg     bool

	mu     sync.Mutex
	tokens map[string]string // challenge path -> key authorization
}

// ACMEOptions configure an [ACMEIssuer].
type ACMEOptions struct {
	// DirectoryURL is the CA's directory, e.g.
	// https://acme-v02.api.letsencrypt.org/directory.
	DirectoryURL string
	// AccountKey signs ACME requests; nil generates a P-256 key (a new
	// account per process).
	AccountKey crypto.Signer
	// Contact lists account contacts, e.g. "mailto:pki@example.com".
	Contact []string
	// HTTPClient talks to the CA; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Profile requests an issuance profile (draft-ietf-acme-profiles);
	// empty means the CA's default.
	Profile string
	// TrustRoots are returned by Roots (public listeners are verified by
	// their clients' own public roots; tests pass the test CA's root).
	TrustRoots []*x509.Certificate
}

// NewACMEIssuer returns an issuer for the CA at opts.DirectoryURL.
func NewACMEIssuer(opts ACMEOptions) (*ACMEIssuer, error) {
	if opts.DirectoryURL == "" {
		return nil, errors.New("acme: directoryURL is empty: set it to your CA's ACME directory")
	}
	if opts.AccountKey == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("acme: generate account key: %w", err)
		}
		opts.AccountKey = k
	}
	return &ACMEIssuer{
		opts:   opts,
		client: &acme.Client{Key: opts.AccountKey, DirectoryURL: opts.DirectoryURL, HTTPClient: opts.HTTPClient, UserAgent: "meshwarden"},
		tokens: map[string]string{},
	}, nil
}

// Kind returns "acme".
func (*ACMEIssuer) Kind() string { return "acme" }

// HTTPHandler serves HTTP-01 challenge responses under
// /.well-known/acme-challenge/ and answers 404 to anything else.
func (a *ACMEIssuer) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		resp, ok := a.tokens[r.URL.Path]
		a.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(resp))
	})
}

func (a *ACMEIssuer) register(ctx context.Context) error {
	a.regOnce.Lock()
	defer a.regOnce.Unlock()
	if a.reg {
		return nil
	}
	_, err := a.client.Register(ctx, &acme.Account{Contact: a.opts.Contact}, acme.AcceptTOS)
	if err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("acme: register account at %s: %w", a.opts.DirectoryURL, err)
	}
	a.reg = true
	return nil
}

// Issue runs an ACME order for name (a DNS name; several names may be
// given comma-separated, the first is the certificate's name) and returns
// the certificate with a fresh P-256 key.
func (a *ACMEIssuer) Issue(ctx context.Context, name string) (*Certificate, error) {
	if err := a.register(ctx); err != nil {
		return nil, err
	}
	names := strings.Split(name, ",")
	var oo []acme.OrderOption
	if a.opts.Profile != "" {
		oo = append(oo, acme.WithOrderIssuanceProfile(acme.ProfileName(a.opts.Profile)))
	}
	order, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(names...), oo...)
	var ae *acme.Error
	if errors.As(err, &ae) && ae.ProblemType == "urn:ietf:params:acme:error:accountDoesNotExist" {
		// The CA forgot the account (a test CA restarted, an account
		// deactivated): register again and retry once.
		a.regOnce.Lock()
		a.reg = false
		a.regOnce.Unlock()
		if err := a.register(ctx); err != nil {
			return nil, err
		}
		order, err = a.client.AuthorizeOrder(ctx, acme.DomainIDs(names...), oo...)
	}
	if err != nil {
		return nil, fmt.Errorf("acme: new order for %s: %w", name, err)
	}
	for _, u := range order.AuthzURLs {
		if err := a.authorize(ctx, u); err != nil {
			return nil, fmt.Errorf("acme: authorize %s: %w", name, err)
		}
	}
	if order, err = a.client.WaitOrder(ctx, order.URI); err != nil {
		return nil, fmt.Errorf("acme: order for %s: %w", name, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("acme: generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("acme: csr for %s: %w", name, err)
	}
	ders, _, err := a.client.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return nil, fmt.Errorf("acme: finalize order for %s: %w", name, err)
	}
	var chain []byte
	for _, d := range ders {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("acme: encode key: %w", err)
	}
	return NewCertificate(name, chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func (a *ACMEIssuer) authorize(ctx context.Context, url string) error {
	z, err := a.client.GetAuthorization(ctx, url)
	if err != nil {
		return err
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == "http-01" {
			chal = c
			break
		}
	}
	if chal == nil {
		return fmt.Errorf("the CA offers no http-01 challenge for %s", z.Identifier.Value)
	}
	resp, err := a.client.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return err
	}
	path := a.client.HTTP01ChallengePath(chal.Token)
	a.mu.Lock()
	a.tokens[path] = resp
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.tokens, path)
		a.mu.Unlock()
	}()
	if _, err := a.client.Accept(ctx, chal); err != nil {
		return err
	}
	_, err = a.client.WaitAuthorization(ctx, z.URI)
	return err
}

// Roots returns the configured TrustRoots.
func (a *ACMEIssuer) Roots(context.Context) ([]*x509.Certificate, error) {
	return a.opts.TrustRoots, nil
}

var _ Issuer = (*ACMEIssuer)(nil)
