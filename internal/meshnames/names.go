package meshnames

// Names shared by the control plane's xDS resources, the certificate issuers,
// the filters' default configuration and the gateway. One definition each.
const (
	// LeafSecretPrefix + service names the SDS secret holding a service's
	// leaf certificate and key (tls_certificate).
	LeafSecretPrefix = "mw-leaf:"
	// RootsSecretName names the SDS secret holding the trust bundle
	// (validation_context), old and new roots during a rotation.
	RootsSecretName = "mw-roots"
	// AuditClusterName is the cluster of the audit collector, which the
	// audit filter dispatches batches to.
	AuditClusterName = "mw-audit"
	// OTLPClusterName is the cluster of the OTLP/HTTP trace collector.
	OTLPClusterName = "mw-otlp"
	// GatewayNodeCluster is the node.cluster of gateways in their bootstrap;
	// sidecars use the name of the service they front.
	GatewayNodeCluster = "meshwarden-gateway"
	// PlaneServiceName is the name the control plane registers in Consul.
	PlaneServiceName = "meshwarden-controlplane"
	// CollectorServiceName is the name the audit collector registers in Consul.
	CollectorServiceName = "meshwarden-audit"
)

// LeafSecretName returns the SDS secret name of service's leaf certificate.
func LeafSecretName(service string) string { return LeafSecretPrefix + service }

// ModulesClusterName is the cluster of the control plane's wasm module
// server, which Envoy's vm_config.code.remote.http_uri fetches modules over.
const ModulesClusterName = "mw-modules"
