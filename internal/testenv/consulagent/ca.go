package consulagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// SetCAConfig rewrites the Connect CA configuration of the agent's provider
// with fields changed and validation skipped: LeafCertTTL below 1h, or a new
// PrivateKey (with RootCert "") to rotate the root. Right after the agent
// starts, the CA may still be initialising (Consul answers 500 "CA is already
// in state INITIALIZING"), so failures are retried for up to 30s.
func SetCAConfig(ctx context.Context, c *api.Client, fields map[string]any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		cur, _, err := c.Connect().CAGetConfig((&api.QueryOptions{}).WithContext(ctx))
		if err == nil {
			cfg := make(map[string]any, len(cur.Config)+len(fields)+1)
			for k, v := range cur.Config {
				cfg[k] = v
			}
			cfg["SkipValidate"] = true
			for k, v := range fields {
				cfg[k] = v
			}
			_, err = c.Connect().CASetConfig(&api.CAConfig{Provider: cur.Provider, Config: cfg}, (&api.WriteOptions{}).WithContext(ctx))
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("set Connect CA config: %w", last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// NewCAKey returns a fresh EC P-256 private key, PEM-encoded, as Consul's
// CA configuration takes it: setting it as PrivateKey rotates the root.
func NewCAKey() (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate CA key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("encode CA key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), nil
}

// RotateRoot has Consul's Connect CA take a fresh key (NewCAKey), which
// rotates its root, and sets its leaf TTL to leafTTL (e.g. "2m").
func RotateRoot(ctx context.Context, c *api.Client, leafTTL string) error {
	key, err := NewCAKey()
	if err != nil {
		return err
	}
	return SetCAConfig(ctx, c, map[string]any{"LeafCertTTL": leafTTL, "PrivateKey": key, "RootCert": ""})
}

// ActiveRoot returns Consul Connect's active root certificate and the
// trust domain.
func ActiveRoot(ctx context.Context, c *api.Client) (*x509.Certificate, string, error) {
	list, _, err := c.Connect().CARoots((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, "", fmt.Errorf("connect CA roots: %w", err)
	}
	for _, r := range list.Roots {
		if r.ID != list.ActiveRootID {
			continue
		}
		b, _ := pem.Decode([]byte(r.RootCertPEM))
		if b == nil {
			return nil, "", fmt.Errorf("active root %s: no PEM certificate", r.ID)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("active root %s: %w", r.ID, err)
		}
		return cert, list.TrustDomain, nil
	}
	return nil, "", errors.New("consul lists no active root")
}
