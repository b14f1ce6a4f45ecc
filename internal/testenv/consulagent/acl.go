package consulagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/consul/api"
)

// TokenSpec describes an ACL token to create with [Agent.CreateToken].
type TokenSpec struct {
	// Description is shown in Consul and recorded by the plane as who
	// acted.
	Description string
	// Services become service identities: service:write on each name
	// (a leaf certificate, registration) and read on every service and
	// node, as Consul grants a sidecar.
	Services []string
	// Rules, when set, is an HCL policy created for this token.
	Rules string
}

// CreateToken creates a token with the management token of an agent
// started with ACLs on, and returns its secret and accessor id.
func (a *Agent) CreateToken(ctx context.Context, spec TokenSpec) (secret, accessor string, err error) {
	c, err := a.Client()
	if err != nil {
		return "", "", err
	}
	return CreateToken(ctx, c, spec)
}

// CreateToken creates a token through c (which must hold acl:write).
func CreateToken(ctx context.Context, c *api.Client, spec TokenSpec) (secret, accessor string, err error) {
	w := (&api.WriteOptions{}).WithContext(ctx)
	tok := &api.ACLToken{Description: spec.Description}
	for _, s := range spec.Services {
		tok.ServiceIdentities = append(tok.ServiceIdentities, &api.ACLServiceIdentity{ServiceName: s})
	}
	if spec.Rules != "" {
		p, _, err := c.ACL().PolicyCreate(&api.ACLPolicy{Name: "mw-" + randomName(), Description: spec.Description, Rules: spec.Rules}, w)
		if err != nil {
			return "", "", fmt.Errorf("create ACL policy for %q: %w", spec.Description, err)
		}
		tok.Policies = append(tok.Policies, &api.ACLTokenPolicyLink{ID: p.ID})
	}
	out, _, err := c.ACL().TokenCreate(tok, w)
	if err != nil {
		return "", "", fmt.Errorf("create ACL token %q: %w", spec.Description, err)
	}
	return out.SecretID, out.AccessorID, nil
}

// DeleteToken revokes the token with accessor id.
func (a *Agent) DeleteToken(ctx context.Context, accessor string) error {
	c, err := a.Client()
	if err != nil {
		return err
	}
	if _, err := c.ACL().TokenDelete(accessor, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("delete ACL token %s: %w", accessor, err)
	}
	return nil
}

// randomName returns 16 random hex characters (ACL policy names are unique).
func randomName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewToken returns a fresh random token secret in Consul's UUID format.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
