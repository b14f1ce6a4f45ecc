// Package controlplane serves xDS (ADS: LDS, RDS, CDS, EDS, SDS, ECDS) to
// Envoy sidecars and Meshwarden gateways. Its input is the Consul catalog
// (see package consulwatch) and the policy set (ir); package
// translate turns both into Envoy resources per node, and this package
// publishes them through go-control-plane's snapshot cache and server.
package controlplane

import (
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
)

// SecretSource supplies SDS secrets. The certificates component
// (controlplane/certs) implements it; the plane includes its secrets in
// every node's snapshot and rebuilds snapshots when Changed fires.
//
// Secrets must return, for a sidecar of service S, a secret named
// meshnames.LeafSecretName(S) (tls_certificate) and one named meshnames.RootsSecretName
// (validation_context); for a gateway, meshnames.LeafSecretName(meshnames.GatewayNodeCluster)
// and meshnames.RootsSecretName. When a SecretSource is configured, listeners and
// clusters reference these names over SDS (ADS config source).
type SecretSource interface {
	// Secrets returns the secrets node needs now.
	Secrets(node xdsnode.Info) ([]*tlsv3.Secret, error)
	// Changed is signalled (non-blocking send, capacity >= 1) whenever
	// Secrets would return something new, e.g. after a rotation.
	Changed() <-chan struct{}
}
