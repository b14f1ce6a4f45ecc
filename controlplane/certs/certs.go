// Package certs issues, renews and serves the mesh's certificates: leaf
// certificates per service (SPIFFE ids) from Consul's Connect CA by default,
// public certificates for the gateway's listeners from an ACME CA, or leaves
// signed by a CA read from files. A [Manager] keeps every certificate fresh
// (renewing RenewBefore ahead of expiry), keeps old and new roots in the trust
// bundle during a root rotation, exports seconds-to-expiry metrics, fails its
// readiness check when renewal keeps failing near expiry, and hands the
// result to the control plane as SDS secrets ([Manager.Secrets]) and to Go
// servers and clients as live tls.Config callbacks.
//
// # Notes
//
// Private keys are held in [KeyPEM], whose every fmt verb prints
// "[redacted]": a key can not reach a log line by accident. Files written by
// the manager are 0600.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/meshwarden/meshwarden/internal/pemcert"
)

// Issuer obtains certificates from one certificate authority.
type Issuer interface {
	// Kind names the issuer ("consul", "acme", "file") in metrics and logs.
	Kind() string
	// Issue obtains a certificate for name (a service name, or a DNS name
	// for ACME). It returns a new certificate where the CA can make one; a
	// CA that renews on its own (Consul's agent) returns its current one.
	Issue(ctx context.Context, name string) (*Certificate, error)
	// Roots returns the CA's current trust roots. An issuer whose roots
	// are public (ACME) returns the roots it was configured with, possibly
	// none.
	Roots(ctx context.Context) ([]*x509.Certificate, error)
}

// Watcher is implemented by issuers whose backend renews certificates and
// rotates roots on its own and can report it with blocking queries
// (Consul's agent). The manager then follows the backend rather than
// deciding renewals itself.
type Watcher interface {
	// WatchLeaf blocks until the backend holds a certificate for name other
	// than prev (prev nil: returns at once), or until its wait time passes,
	// in which case it returns prev.
	WatchLeaf(ctx context.Context, name string, prev *Certificate) (*Certificate, error)
	// WatchRoots blocks until the roots differ from those seen at index
	// (zero: returns at once) or the wait time passes. It returns the roots
	// and the index to pass next.
	WatchRoots(ctx context.Context, index uint64) ([]*x509.Certificate, uint64, error)
}

// KeyPEM is a PEM-encoded private key. It never prints: every fmt verb
// gives "[redacted]".
type KeyPEM []byte

// String returns "[redacted]".
func (KeyPEM) String() string { return "[redacted]" }

// GoString returns "[redacted]".
func (KeyPEM) GoString() string { return "[redacted]" }

// Format prints "[redacted]" for every verb.
func (KeyPEM) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// MarshalText returns "[redacted]", so JSON or YAML encoders never see the key.
func (KeyPEM) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Certificate is an issued leaf certificate with its chain and key.
type Certificate struct {
	// Name is what the certificate was issued for: the service name (Consul,
	// file CA) or the DNS name (ACME).
	Name string
	// ChainPEM is the leaf followed by any intermediates, PEM-encoded.
	ChainPEM []byte
	// Key is the private key, PEM-encoded.
	Key KeyPEM
	// Leaf is the parsed leaf (first certificate of ChainPEM).
	Leaf *x509.Certificate
	// Intermediates are the parsed certificates after the leaf.
	Intermediates []*x509.Certificate
	// SPIFFEID is the leaf's spiffe:// URI SAN, if any.
	SPIFFEID string
	// Index is the issuer's version of the certificate (Consul's raft
	// index); zero when the issuer has none.
	Index uint64

	tls *tls.Certificate
}

// Serial returns the leaf's serial number in hex.
func (c *Certificate) Serial() string { return hex.EncodeToString(c.Leaf.SerialNumber.Bytes()) }

// NotAfter returns the leaf's expiry.
func (c *Certificate) NotAfter() time.Time { return c.Leaf.NotAfter }

// Lifetime returns the leaf's validity period.
func (c *Certificate) Lifetime() time.Duration { return c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) }

// TLS returns the certificate as a tls.Certificate (chain and key).
func (c *Certificate) TLS() *tls.Certificate { return c.tls }

// String describes the certificate without its key.
func (c *Certificate) String() string {
	return fmt.Sprintf("certificate %s serial %s expires %s", c.Name, c.Serial(), c.NotAfter().UTC().Format(time.RFC3339))
}

// NewCertificate parses a PEM chain (leaf first) and key into a Certificate.
func NewCertificate(name string, chainPEM, keyPEM []byte) (*Certificate, error) {
	pair, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: chain and key do not form a pair: %w", name, err)
	}
	certs, err := ParsePEMCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", name, err)
	}
	pair.Leaf = certs[0]
	c := &Certificate{
		Name:          name,
		ChainPEM:      append([]byte(nil), chainPEM...),
		Key:           append(KeyPEM(nil), keyPEM...),
		Leaf:          certs[0],
		Intermediates: certs[1:],
		tls:           &pair,
	}
	for _, u := range certs[0].URIs {
		if u.Scheme == "spiffe" {
			c.SPIFFEID = u.String()
			break
		}
	}
	return c, nil
}

// ParsePEMCertificates parses every CERTIFICATE block of data
// (pemcert.Certificates).
func ParsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	return pemcert.Certificates(data)
}

// EncodePEM encodes certificates as concatenated PEM blocks.
func EncodePEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Verify checks that the certificate chains to one of roots at time now.
// The leaf is checked for any key usage (mesh leaves are both client and
// server certificates).
func (c *Certificate) Verify(roots *x509.CertPool, now time.Time) error {
	return pemcert.VerifyChain(append([]*x509.Certificate{c.Leaf}, c.Intermediates...), roots, now)
}
