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
	"math/big"
	"net/url"
	"os"
	"sync"
	"time"
)

// FileCA signs leaves with a CA certificate and key read from files (a CA
// the platform team provides). Leaves carry the SPIFFE id
// spiffe://<TrustDomain>/ns/default/dc/<Datacenter>/svc/<name>, the shape
// Consul uses, so policies name peers the same way under either issuer.
// Reload re-reads the files: replacing them rotates the root.
type FileCA struct {
	opts FileCAOptions

	mu   sync.Mutex
	cert *x509.Certificate
	key  crypto.Signer
}

// FileCAOptions configure a [FileCA].
type FileCAOptions struct {
	// CertFile and KeyFile hold the CA certificate and its private key (PEM;
	// PKCS#8, EC or PKCS#1).
	CertFile, KeyFile string
	// TrustDomain is the SPIFFE trust domain, e.g. "mesh.example".
	TrustDomain string
	// Datacenter goes into the SPIFFE id; empty means "dc1".
	Datacenter string
	// LeafTTL is the leaf lifetime; zero means 72h.
	LeafTTL time.Duration
}

// NewFileCA reads the CA files.
func NewFileCA(opts FileCAOptions) (*FileCA, error) {
	if opts.TrustDomain == "" {
		return nil, errors.New("file CA: trustDomain is empty: set it to your SPIFFE trust domain, e.g. mesh.example")
	}
	if opts.Datacenter == "" {
		opts.Datacenter = "dc1"
	}
	if opts.LeafTTL <= 0 {
		opts.LeafTTL = 72 * time.Hour
	}
	f := &FileCA{opts: opts}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload re-reads the CA certificate and key.
func (f *FileCA) Reload() error {
	certPEM, err := os.ReadFile(f.opts.CertFile)
	if err != nil {
		return fmt.Errorf("file CA: read certFile: %w", err)
	}
	certs, err := ParsePEMCertificates(certPEM)
	if err != nil {
		return fmt.Errorf("file CA: certFile %s: %w", f.opts.CertFile, err)
	}
	keyPEM, err := os.ReadFile(f.opts.KeyFile)
	if err != nil {
		return fmt.Errorf("file CA: read keyFile: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return fmt.Errorf("file CA: keyFile %s: %w", f.opts.KeyFile, err)
	}
	if !certs[0].IsCA {
		return fmt.Errorf("file CA: certFile %s is not a CA certificate (basicConstraints CA:false)", f.opts.CertFile)
	}
	f.mu.Lock()
	f.cert, f.key = certs[0], key
	f.mu.Unlock()
	return nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block: give a PEM-encoded private key")
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported private key: use PKCS#8, SEC1 EC or PKCS#1 RSA")
}

// Kind returns "file".
func (*FileCA) Kind() string { return "file" }

// SPIFFEID returns the id FileCA puts in the leaf of name.
func (f *FileCA) SPIFFEID(name string) string {
	return fmt.Sprintf("spiffe://%s/ns/default/dc/%s/svc/%s", f.opts.TrustDomain, f.opts.Datacenter, name)
}

// Issue signs a fresh leaf for name with a new P-256 key.
func (f *FileCA) Issue(_ context.Context, name string) (*Certificate, error) {
	f.mu.Lock()
	ca, caKey := f.cert, f.key
	f.mu.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("file CA: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("file CA: serial: %w", err)
	}
	id, err := url.Parse(f.SPIFFEID(name))
	if err != nil {
		return nil, fmt.Errorf("file CA: service name %q does not make a SPIFFE id: %w", name, err)
	}
	now := time.Now()
	notAfter := now.Add(f.opts.LeafTTL)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("file CA: sign leaf for %s: %w", name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("file CA: encode key: %w", err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return NewCertificate(name, chain, keyPEM)
}

// Roots returns the CA certificate.
func (f *FileCA) Roots(context.Context) ([]*x509.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []*x509.Certificate{f.cert}, nil
}

var _ Issuer = (*FileCA)(nil)
