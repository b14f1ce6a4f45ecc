// Package auth decides who may talk to the control plane. Every xDS
// stream and every admin call is authenticated by a Consul ACL token
// (checked by Consul itself, never parsed here) or by a client certificate
// of the mesh CA, and authorised by Consul's own rules: a proxy may act as
// service S only with a token holding service:write on S, exactly the
// right Consul requires to issue S's Connect leaf; an operator reads the
// plane with operator:read, reads configuration with mesh:read and applies
// policy with mesh:write.
//
// Decisions are cached for a short TTL (one Consul round trip per token
// per TTL, however many streams share it), and kept for a bounded grace
// while Consul cannot be reached, so a Consul outage does not cut every
// proxy off; a token Consul no longer knows is refused at the next check.
// See docs/RATIONALE-auth.md.
package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/singleflight"
)

// Errors a caller is refused with. They wrap the detail; test with
// errors.Is.
var (
	// ErrUnauthenticated: no credential, or one Consul does not know
	// (wrong, expired or revoked token; a certificate of another CA).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrDenied: the credential is valid but lacks the right.
	ErrDenied = errors.New("permission denied")
	// ErrUnavailable: Consul's ACL endpoints cannot be reached and there
	// is no recent decision to fall back on.
	ErrUnavailable = errors.New("cannot verify credentials")
)

// Principal is an authenticated caller. It never holds a printable secret.
type Principal struct {
	// Kind is "consul-token" or "spiffe".
	Kind string `json:"kind"`
	// AccessorID and Description identify a Consul token (its public
	// half; the secret is not kept here).
	AccessorID  string `json:"accessor_id,omitempty"`
	Description string `json:"description,omitempty"`
	// SPIFFEID is the URI SAN of a verified mesh client certificate.
	SPIFFEID string `json:"spiffe_id,omitempty"`

	key [32]byte // sha256 of the token secret: the cache key
}

// String is how the principal appears in logs and the change log.
func (p Principal) String() string {
	switch p.Kind {
	case "spiffe":
		return "spiffe " + p.SPIFFEID
	case "consul-token":
		s := "consul token " + p.AccessorID
		if p.Description != "" {
			s += fmt.Sprintf(" (%s)", p.Description)
		}
		return s
	case "insecure-dev":
		return "unauthenticated (--insecure-dev)"
	}
	return "anonymous"
}

// Service returns the service of a SPIFFE principal (the last path segment
// after /svc/), or "".
func (p Principal) Service() string {
	if p.Kind != "spiffe" {
		return ""
	}
	i := strings.LastIndex(p.SPIFFEID, "/svc/")
	if i < 0 {
		return ""
	}
	return p.SPIFFEID[i+len("/svc/"):]
}

// PlaneTokenRules is the Consul ACL policy of the control plane's own
// token: read the catalog, get every proxied service's leaf (service:write,
// as Consul requires for /v1/agent/connect/ca/leaf), register itself, and
// set the Connect CA's leaf lifetime from a CertificatePolicy, keep the
// applied policy set in Consul KV (meshwarden/), shared by the replicas,
// and read Consul intentions (a second source of access policy).
const PlaneTokenRules = `
service_prefix "" {
  policy     = "write"
  intentions = "read"
}
key_prefix "meshwarden/" { policy = "write" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
operator = "write"
`

// OperatorTokenRules is the policy of an operator who reads the plane
// (operator:read) and reads and applies configuration (mesh:write).
const OperatorTokenRules = `
operator = "read"
mesh = "write"
`

// Permission is one Consul ACL right, e.g. {service, payments, write}.
type Permission struct {
	Resource string `json:"Resource"`
	Segment  string `json:"Segment,omitempty"`
	Access   string `json:"Access"`
}

func (p Permission) String() string {
	if p.Segment != "" {
		return fmt.Sprintf("%s:%s on %q", p.Resource, p.Access, p.Segment)
	}
	return p.Resource + ":" + p.Access
}

// The rights the plane asks for.
var (
	// OperatorRead reads the plane's status and connected nodes.
	OperatorRead = Permission{Resource: "operator", Access: "read"}
	// MeshRead reads configuration (config dumps, translations).
	MeshRead = Permission{Resource: "mesh", Access: "read"}
	// MeshWrite applies policy.
	MeshWrite = Permission{Resource: "mesh", Access: "write"}
)

// ServiceWrite is the right to act as service s (and to get its leaf).
func ServiceWrite(s string) Permission {
	return Permission{Resource: "service", Segment: s, Access: "write"}
}

// Options configure an [Authenticator].
type Options struct {
	// Consul is the configuration of the plane's own Consul client; the
	// callers' tokens are sent to the same agent.
	Consul *api.Config
	// TTL is how long a decision is reused (default 10s): the bound on how
	// long a revoked token keeps working.
	TTL time.Duration
	// Grace is how long a decision is kept while Consul cannot be reached
	// (default 5m). New credentials are refused during an outage.
	Grace time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Authenticator checks Consul ACL tokens and rights against Consul.
type Authenticator struct {
	opts      Options
	client    *api.Client
	hc        *http.Client
	authorize string // URL of /v1/internal/acl/authorize

	mu    sync.Mutex
	cache map[string]*decision
	// flight joins concurrent lookups of one key: a thousand proxies
	// sharing a token that connect at once cost one Consul round trip.
	flight singleflight.Group
}

type decision struct {
	at        time.Time
	principal Principal
	err       error // ErrUnauthenticated or ErrDenied (definitive answers only)
}

// New returns an authenticator for the agent opts.Consul points at.
func New(opts Options) (*Authenticator, error) {
	if opts.Consul == nil {
		return nil, errors.New("auth: Options.Consul is nil: pass the plane's Consul client configuration")
	}
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Second
	}
	if opts.Grace <= 0 {
		opts.Grace = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg := *opts.Consul
	client, err := api.NewClient(&cfg)
	if err != nil {
		return nil, fmt.Errorf("auth: consul client: %w", err)
	}
	hc := cfg.HttpClient
	if hc == nil {
		if hc, err = api.NewHttpClient(cfg.Transport, cfg.TLSConfig); err != nil {
			return nil, fmt.Errorf("auth: consul http client: %w", err)
		}
	}
	base := cfg.Address
	if !strings.Contains(base, "://") {
		scheme := cfg.Scheme
		if scheme == "" {
			scheme = "http"
		}
		base = scheme + "://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("auth: consul address %q: %w", cfg.Address, err)
	}
	u.Path = "/v1/internal/acl/authorize"
	return &Authenticator{opts: opts, client: client, hc: hc, authorize: u.String(), cache: map[string]*decision{}}, nil
}

// TTL is the reuse time of a decision: streams re-check at this interval.
func (a *Authenticator) TTL() time.Duration { return a.opts.TTL }

// CheckEnabled verifies that Consul's ACL system is on and that token (the
// plane's own) is valid: with ACLs off every caller would pass.
func (a *Authenticator) CheckEnabled(ctx context.Context, token string) error {
	q := (&api.QueryOptions{Token: token}).WithContext(ctx)
	_, _, err := a.client.ACL().TokenReadSelf(q)
	var se api.StatusError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.Code == http.StatusUnauthorized:
		return fmt.Errorf("consul's ACL system is disabled (%s): callers cannot be authenticated; run Consul with acl { enabled = true, default_policy = \"deny\" } or start the plane with --insecure-dev on loopback", strings.TrimSpace(se.Body))
	case errors.As(err, &se) && se.Code == http.StatusForbidden:
		return fmt.Errorf("the plane's own Consul token is not valid (%s): set CONSUL_HTTP_TOKEN or --consul-token-file", strings.TrimSpace(se.Body))
	default:
		return fmt.Errorf("check consul's ACL system: %w", err)
	}
}

// Authenticate resolves a token secret to its principal.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if secret == "" {
		return Principal{}, fmt.Errorf("%w: no Consul ACL token given (send it as x-consul-token or Authorization: Bearer)", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(secret))
	return a.decide(ctx, string(key[:])+"\x00self", func(ctx context.Context) (Principal, error) {
		tok, _, err := a.client.ACL().TokenReadSelf((&api.QueryOptions{Token: secret}).WithContext(ctx))
		if err != nil {
			return Principal{}, classify(err)
		}
		if tok.ExpirationTime != nil && !tok.ExpirationTime.After(a.opts.Now()) {
			return Principal{}, fmt.Errorf("%w: the token expired at %s", ErrUnauthenticated, tok.ExpirationTime.Format(time.RFC3339))
		}
		return Principal{Kind: "consul-token", AccessorID: tok.AccessorID, Description: tok.Description, key: key}, nil
	})
}

// Authorize checks that token principal p holds every permission.
func (a *Authenticator) Authorize(ctx context.Context, secret string, perms ...Permission) error {
	key := sha256.Sum256([]byte(secret))
	names := make([]string, len(perms))
	for i, p := range perms {
		names[i] = p.String()
	}
	sort.Strings(names)
	_, err := a.decide(ctx, string(key[:])+"\x00"+strings.Join(names, ","), func(ctx context.Context) (Principal, error) {
		return Principal{}, a.remoteAuthorize(ctx, secret, perms)
	})
	return err
}

// decide returns the cached decision for key if younger than TTL, asks
// Consul otherwise, and falls back on a decision younger than Grace when
// Consul cannot be reached.
func (a *Authenticator) decide(ctx context.Context, key string, ask func(context.Context) (Principal, error)) (Principal, error) {
	now := a.opts.Now()
	a.mu.Lock()
	d := a.cache[key]
	a.mu.Unlock()
	if d != nil && now.Sub(d.at) < a.opts.TTL {
		return d.principal, d.err
	}
	v, _, _ := a.flight.Do(key, func() (any, error) {
		// Detached from the first caller's context: the answer serves
		// every caller waiting on this key.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		p, err := ask(cctx)
		if !errors.Is(err, ErrUnavailable) {
			a.mu.Lock()
			a.cache[key] = &decision{at: now, principal: p, err: err}
			a.pruneLocked(now)
			a.mu.Unlock()
		}
		return &decision{at: now, principal: p, err: err}, nil
	})
	res := v.(*decision)
	if errors.Is(res.err, ErrUnavailable) {
		if d != nil && now.Sub(d.at) < a.opts.Grace {
			return d.principal, d.err
		}
	}
	return res.principal, res.err
}

// pruneLocked drops decisions older than Grace (bounded memory).
func (a *Authenticator) pruneLocked(now time.Time) {
	if len(a.cache) < 4096 {
		return
	}
	for k, d := range a.cache {
		if now.Sub(d.at) > a.opts.Grace {
			delete(a.cache, k)
		}
	}
}

func (a *Authenticator) remoteAuthorize(ctx context.Context, secret string, perms []Permission) error {
	body, err := json.Marshal(perms)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.authorize, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("X-Consul-Token", secret)
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: consul acl authorize: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	var out []struct {
		Permission
		Allow bool `json:"Allow"`
	}
	switch {
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w: consul refused the token (HTTP %d)", ErrUnauthenticated, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: consul acl authorize: HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("%w: consul acl authorize: %w", ErrUnavailable, err)
	}
	if len(out) != len(perms) {
		return fmt.Errorf("%w: consul answered %d of %d authorizations", ErrUnavailable, len(out), len(perms))
	}
	for i, r := range out {
		if !r.Allow {
			return fmt.Errorf("%w: the token lacks %s", ErrDenied, perms[i])
		}
	}
	return nil
}

// classify maps a Consul client error to ErrUnauthenticated (Consul
// answered no) or ErrUnavailable (no answer).
func classify(err error) error {
	var se api.StatusError
	if errors.As(err, &se) && (se.Code == http.StatusForbidden || se.Code == http.StatusUnauthorized) {
		return fmt.Errorf("%w: consul does not accept the token (%s)", ErrUnauthenticated, strings.TrimSpace(se.Body))
	}
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return fmt.Errorf("%w: consul does not know the token", ErrUnauthenticated)
	}
	return fmt.Errorf("%w: consul acl: %w", ErrUnavailable, err)
}

// TokenFrom extracts a token from header values: X-Consul-Token, or
// Authorization: Bearer.
func TokenFrom(consulToken, authorization string) string {
	if t := strings.TrimSpace(consulToken); t != "" {
		return t
	}
	if v, ok := strings.CutPrefix(strings.TrimSpace(authorization), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return ""
}
