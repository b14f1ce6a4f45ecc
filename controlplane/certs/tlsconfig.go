package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/meshwarden/meshwarden/internal/pemcert"
)

// GetCertificate returns a tls.Config.GetCertificate that always serves
// name's current certificate: renewals take effect on the next handshake,
// with no restart and no dropped connection.
func (m *Manager) GetCertificate(name string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := m.Certificate(name); c != nil {
			return c.TLS(), nil
		}
		return nil, fmt.Errorf("certs: no certificate for %s yet", name)
	}
}

// GetClientCertificate is GetCertificate for the client side of mTLS.
func (m *Manager) GetClientCertificate(name string) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := m.Certificate(name); c != nil {
			return c.TLS(), nil
		}
		return nil, fmt.Errorf("certs: no certificate for %s yet", name)
	}
}

// VerifyPeer checks a peer's chain against the current trust bundle and,
// if allow is non-nil, its SPIFFE id with allow.
func (m *Manager) VerifyPeer(chain []*x509.Certificate, allow func(spiffeID string) error) error {
	if len(chain) == 0 {
		return errors.New("peer sent no certificate")
	}
	if err := pemcert.VerifyChain(chain, m.Pool(), time.Now()); err != nil {
		return fmt.Errorf("peer certificate does not chain to the trust bundle: %w", err)
	}
	if allow == nil {
		return nil
	}
	id := ""
	for _, u := range chain[0].URIs {
		if u.Scheme == "spiffe" {
			id = u.String()
		}
	}
	return allow(id)
}

// AllowSPIFFE returns an allow function accepting exactly ids.
func AllowSPIFFE(ids ...string) func(string) error {
	return func(id string) error {
		for _, a := range ids {
			if a == "*" || a == id {
				return nil
			}
		}
		return fmt.Errorf("peer SPIFFE id %q is not allowed (allowed: %v)", id, ids)
	}
}

// ServerTLSConfig returns a mutual-TLS server config serving name's live
// certificate and verifying clients against the live trust bundle and
// allow (nil: any id the bundle vouches for).
func (m *Manager) ServerTLSConfig(name string, allow func(string) error) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.GetCertificate(name),
		// The chain is verified in VerifyConnection against the bundle of
		// the moment, so a root rotation needs no new tls.Config.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return m.VerifyPeer(cs.PeerCertificates, allow)
		},
	}
}

// ClientTLSConfig returns a mutual-TLS client config presenting name's live
// certificate and verifying the server against the live trust bundle and
// allow (e.g. AllowSPIFFE of the upstream's id).
func (m *Manager) ClientTLSConfig(name string, allow func(string) error) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: m.GetClientCertificate(name),
		// Verified in VerifyConnection against the live bundle instead of
		// a RootCAs pool frozen into this config.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return m.VerifyPeer(cs.PeerCertificates, allow)
		},
	}
}

// OptionalClientTLSConfig returns a server config serving name's live
// certificate where a client certificate is optional, but one that is sent
// must chain to the live trust bundle (the identity it proves is checked
// by the caller). The control plane's xDS port uses it: proxies usually
// authenticate with a Consul ACL token, and may present their mesh leaf.
func (m *Manager) OptionalClientTLSConfig(name string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.GetCertificate(name),
		ClientAuth:     tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			return m.VerifyPeer(cs.PeerCertificates, nil)
		},
	}
}
