// Package xdsnode describes one xDS client as the control plane knows it
// from its bootstrap (node.id, node.cluster, node.metadata). It sits below
// the plane so that the parts the plane composes (certs, translate) can name
// a node without importing the plane.
package xdsnode

// Info is what the plane knows of one xDS client from its bootstrap.
type Info struct {
	// ID is node.id.
	ID string `json:"id"`
	// Cluster is node.cluster: meshnames.GatewayNodeCluster for a gateway,
	// else the name of the service the sidecar fronts.
	Cluster string `json:"cluster"`
	// Gateway reports whether the node is a gateway.
	Gateway bool `json:"gateway"`
	// Service is the service a sidecar fronts (empty for a gateway).
	Service string `json:"service,omitempty"`
	// Metadata is node.metadata flattened to strings (inbound_port,
	// local_app_port, listen_port, ...).
	Metadata map[string]string `json:"metadata,omitempty"`
}
