// Package controlplane serves xDS (ADS: LDS, RDS, CDS, EDS, SDS, ECDS) to
// Envoy sidecars and Meshwarden gateways. Its input is the Consul catalog
// (see package consulwatch) and the policy set (internal/ir); package
// translate turns both into Envoy resources per node, and this package
// publishes them through go-control-plane's snapshot cache and server.
package controlplane

import (
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// NodeInfo is what the plane knows of one xDS client from its bootstrap.
type NodeInfo struct {
	// ID is node.id.
	ID string `json:"id"`
	// Cluster is node.cluster: ir.GatewayNodeCluster for a gateway, else
	// the name of the service the sidecar fronts.
	Cluster string `json:"cluster"`
	// Gateway reports whether the node is a gateway.
	Gateway bool `json:"gateway"`
	// Service is the service a sidecar fronts (empty for a gateway).
	Service string `json:"service,omitempty"`
	// Metadata is node.metadata flattened to strings (inbound_port,
	// local_app_port, listen_port, ...).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// SecretSource supplies SDS secrets. The certificates component
// (controlplane/certs) implements it; the plane includes its secrets in
// every node's snapshot and rebuilds snapshots when Changed fires.
//
// Secrets must return, for a sidecar of service S, a secret named
// ir.LeafSecretName(S) (tls_certificate) and one named ir.RootsSecretName
// (validation_context); for a gateway, ir.LeafSecretName(ir.GatewayNodeCluster)
// and ir.RootsSecretName. When a SecretSource is configured, listeners and
// clusters reference these names over SDS (ADS config source).
type SecretSource interface {
	// Secrets returns the secrets node needs now.
	Secrets(node NodeInfo) ([]*tlsv3.Secret, error)
	// Changed is signalled (non-blocking send, capacity >= 1) whenever
	// Secrets would return something new, e.g. after a rotation.
	Changed() <-chan struct{}
}
