package certs

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// Secrets implements the plane's SecretSource: it returns the node's SDS
// secrets, meshnames.LeafSecretName(S) (tls_certificate: chain and key) once
// issued and meshnames.RootsSecretName (validation_context: every root of the
// trust bundle) once read. S is the service a sidecar fronts, or
// meshnames.GatewayNodeCluster for a gateway. An untracked service is tracked
// from now on; its leaf appears on a later call, announced by Changed.
func (m *Manager) Secrets(node xdsnode.Info) ([]*tlsv3.Secret, error) {
	return m.SecretsFor(NodeService(node)), nil
}

// NodeService returns the service whose leaf node presents: node.Service
// for a sidecar, node.Cluster for a gateway or when Service is unset.
func NodeService(node xdsnode.Info) string {
	if node.Gateway || node.Service == "" {
		return node.Cluster
	}
	return node.Service
}

// SecretsFor returns the leaf secrets of services and the roots secret.
func (m *Manager) SecretsFor(services ...string) []*tlsv3.Secret {
	m.Track(services...)
	var out []*tlsv3.Secret
	for _, s := range services {
		if c := m.Certificate(s); c != nil {
			out = append(out, LeafSecret(s, c))
		}
	}
	if roots := m.Roots(); len(roots) > 0 {
		out = append(out, &tlsv3.Secret{
			Name: meshnames.RootsSecretName,
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inline(EncodePEM(roots)),
			}},
		})
	}
	return out
}

// LeafSecret returns c as the tls_certificate secret of service.
func LeafSecret(service string, c *Certificate) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: meshnames.LeafSecretName(service),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(c.ChainPEM),
			PrivateKey:       inline(c.Key),
		}},
	}
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: append([]byte(nil), b...)}}
}
