package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulIssuer takes leaf certificates and roots from a Consul agent's
// Connect CA (/v1/agent/connect/ca/leaf/<service> and
// /v1/agent/connect/ca/roots). The agent signs, caches and renews the
// leaves itself; blocking queries bring every renewal and every root
// rotation to the manager.
type ConsulIssuer struct {
	client *api.Client
	wait   time.Duration
}

// ConsulOptions configure a [ConsulIssuer].
type ConsulOptions struct {
	// WaitTime bounds each blocking query; zero means 5 minutes.
	WaitTime time.Duration
}

// NewConsulIssuer returns an issuer backed by the agent client talks to.
func NewConsulIssuer(client *api.Client, opts ConsulOptions) *ConsulIssuer {
	if opts.WaitTime <= 0 {
		opts.WaitTime = 5 * time.Minute
	}
	return &ConsulIssuer{client: client, wait: opts.WaitTime}
}

// Kind returns "consul".
func (*ConsulIssuer) Kind() string { return "consul" }

// Issue returns the agent's current leaf for service (the agent signs one
// on first request).
func (ci *ConsulIssuer) Issue(ctx context.Context, service string) (*Certificate, error) {
	return ci.leaf(ctx, service, 0)
}

// WatchLeaf blocks until the agent's leaf for service differs from prev.
func (ci *ConsulIssuer) WatchLeaf(ctx context.Context, service string, prev *Certificate) (*Certificate, error) {
	var idx uint64
	if prev != nil {
		idx = prev.Index
	}
	c, err := ci.leaf(ctx, service, idx)
	if err != nil {
		return nil, err
	}
	if prev != nil && c.Serial() == prev.Serial() {
		return prev, nil
	}
	return c, nil
}

func (ci *ConsulIssuer) leaf(ctx context.Context, service string, index uint64) (*Certificate, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: ci.wait}).WithContext(ctx)
	l, meta, err := ci.client.Agent().ConnectCALeaf(service, q)
	if err != nil {
		return nil, fmt.Errorf("consul connect leaf for %q: %w (is Connect enabled on the agent and the ACL token allowed service:write?)", service, err)
	}
	c, err := NewCertificate(service, []byte(l.CertPEM), []byte(l.PrivateKeyPEM))
	if err != nil {
		return nil, fmt.Errorf("consul connect leaf for %q: %w", service, err)
	}
	c.Index = l.ModifyIndex
	if meta != nil && meta.LastIndex != 0 {
		c.Index = meta.LastIndex
	}
	if l.ServiceURI != "" {
		c.SPIFFEID = l.ServiceURI
	}
	return c, nil
}

// Roots returns the agent's current trust roots (active and not yet
// pruned inactive ones).
func (ci *ConsulIssuer) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	roots, _, err := ci.WatchRoots(ctx, 0)
	return roots, err
}

// WatchRoots blocks until the roots change after index.
func (ci *ConsulIssuer) WatchRoots(ctx context.Context, index uint64) ([]*x509.Certificate, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: ci.wait}).WithContext(ctx)
	list, meta, err := ci.client.Agent().ConnectCARoots(q)
	if err != nil {
		return nil, index, fmt.Errorf("consul connect roots: %w", err)
	}
	var out []*x509.Certificate
	for _, r := range list.Roots {
		cs, err := ParsePEMCertificates([]byte(r.RootCertPEM))
		if err != nil {
			return nil, index, fmt.Errorf("consul connect root %s: %w", r.ID, err)
		}
		out = append(out, cs[0])
	}
	if len(out) == 0 {
		return nil, index, fmt.Errorf("consul connect roots: the agent returned none (is Connect enabled?)")
	}
	return out, meta.LastIndex, nil
}

var (
	_ Issuer  = (*ConsulIssuer)(nil)
	_ Watcher = (*ConsulIssuer)(nil)
)

// SetLeafTTL sets the Connect CA's LeafCertTTL (cluster-wide, applied by
// the agents at each leaf's next renewal), leaving the rest of the CA
// configuration as it is. Consul accepts 1h to 8760h; this is how
// ir.CertPolicy.LeafTTL reaches the Consul issuer. It is a no-op when the
// value is already set.
func (ci *ConsulIssuer) SetLeafTTL(ctx context.Context, ttl time.Duration) error {
	if ttl < time.Hour || ttl > 365*24*time.Hour {
		return fmt.Errorf("consul leaf TTL %s is out of range: Consul accepts 1h to 8760h", ttl)
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	cur, _, err := ci.client.Connect().CAGetConfig(q)
	if err != nil {
		return fmt.Errorf("read Connect CA config: %w", err)
	}
	if d, err := time.ParseDuration(fmt.Sprint(cur.Config["LeafCertTTL"])); err == nil && d == ttl {
		return nil
	}
	cfg := make(map[string]any, len(cur.Config)+1)
	for k, v := range cur.Config {
		cfg[k] = v
	}
	cfg["LeafCertTTL"] = ttl.String()
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := ci.client.Connect().CASetConfig(&api.CAConfig{Provider: cur.Provider, Config: cfg}, w); err != nil {
		return fmt.Errorf("set Connect CA LeafCertTTL to %s: %w", ttl, err)
	}
	return nil
}
