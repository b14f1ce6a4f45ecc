package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

func startACLConsul(t *testing.T) (*consulagent.Agent, *api.Client) {
	t.Helper()
	return consultest.LongWith(t, consulagent.Options{ManagementToken: consulagent.NewToken()})
}

func newAuth(t *testing.T, a *consulagent.Agent, now func() time.Time) *auth.Authenticator {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = a.Addr()
	cfg.Token = ""
	au, err := auth.New(auth.Options{Consul: cfg, TTL: time.Millisecond, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return au
}

// TestAuthTokens: Consul resolves tokens and decides rights; an expired
// token is refused even if Consul has not reaped it yet; the principal
// carries the accessor and description, never the secret.
func TestAuthTokens(t *testing.T) {
	a, mgmt := startACLConsul(t)
	ctx := context.Background()
	secret, accessor, err := consulagent.CreateToken(ctx, mgmt, consulagent.TokenSpec{Description: "payments sidecar", Services: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}
	au := newAuth(t, a, nil)

	p, err := au.Authenticate(ctx, secret)
	if err != nil || p.AccessorID != accessor || p.Description != "payments sidecar" {
		t.Fatalf("principal %+v, %v", p, err)
	}
	if s := p.String(); strings.Contains(s, secret) || !strings.Contains(s, accessor) {
		t.Errorf("principal prints as %q", s)
	}
	if err := au.Authorize(ctx, secret, auth.ServiceWrite("payments")); err != nil {
		t.Errorf("service:write on its own service: %v", err)
	}
	for _, perm := range []auth.Permission{auth.ServiceWrite("orders"), auth.MeshWrite, auth.OperatorRead} {
		if err := au.Authorize(ctx, secret, perm); !errors.Is(err, auth.ErrDenied) || !strings.Contains(err.Error(), perm.String()) {
			t.Errorf("%s: %v, want a denial naming the right", perm, err)
		}
	}
	if _, err := au.Authenticate(ctx, consulagent.NewToken()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("unknown token: %v", err)
	}
	if _, err := au.Authenticate(ctx, ""); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "x-consul-token") {
		t.Errorf("no token: %v", err)
	}

	// Consul's shortest token lifetime is a minute; look at it from two
	// minutes later.
	tok, _, err := mgmt.ACL().TokenCreate(&api.ACLToken{Description: "short", ExpirationTTL: time.Minute,
		ServiceIdentities: []*api.ACLServiceIdentity{{ServiceName: "payments"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := au.Authenticate(ctx, tok.SecretID); err != nil {
		t.Fatalf("short-lived token before expiry: %v", err)
	}
	later := newAuth(t, a, func() time.Time { return time.Now().Add(2 * time.Minute) })
	if _, err := later.Authenticate(ctx, tok.SecretID); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}

	// Consul gone: a decision younger than the grace period still holds,
	// a new token cannot be verified.
	a.Stop()
	if p, err := au.Authenticate(ctx, secret); err != nil || p.AccessorID != accessor {
		t.Errorf("known token during the outage (within grace): %+v, %v; want its last decision", p, err)
	}
	if _, err := au.Authenticate(ctx, consulagent.NewToken()); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("new token during the outage: %v, want ErrUnavailable", err)
	}
}

// TestAuthRefusesConsulWithoutACLs: with ACLs off every caller would
// pass, so the plane does not start.
func TestAuthRefusesConsulWithoutACLs(t *testing.T) {
	a, _ := consultest.Long(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	au := newAuth(t, a, nil)
	if err := au.CheckEnabled(ctx, ""); err == nil || !strings.Contains(err.Error(), "ACL system is disabled") {
		t.Fatalf("CheckEnabled on a Consul without ACLs: %v", err)
	}
}

func TestTokenFrom(t *testing.T) {
	for _, tc := range []struct{ consul, authz, want string }{
		{"abc", "", "abc"},
		{"", "Bearer xyz", "xyz"},
		{" abc ", "Bearer xyz", "abc"},
		{"", "Basic xyz", ""},
		{"", "", ""},
	} {
		if got := auth.TokenFrom(tc.consul, tc.authz); got != tc.want {
			t.Errorf("TokenFrom(%q, %q) = %q, want %q", tc.consul, tc.authz, got, tc.want)
		}
	}
}

// TestAuthConcurrentJoinsShareOneLookup: a fleet sharing a token that
// connects at once costs Consul one token lookup, not one per proxy.
func TestAuthConcurrentJoinsShareOneLookup(t *testing.T) {
	a, mgmt := startACLConsul(t)
	secret, _, err := consulagent.CreateToken(context.Background(), mgmt, consulagent.TokenSpec{Description: "fleet", Services: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}
	var lookups atomic.Int64
	target, _ := url.Parse("http://" + a.Addr())
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/acl/token/self" {
			lookups.Add(1)
			time.Sleep(50 * time.Millisecond) // a slow Consul: every joiner arrives before the answer
		}
		proxy.ServeHTTP(w, r)
	}))
	defer counting.Close()
	cfg := api.DefaultConfig()
	cfg.Address = strings.TrimPrefix(counting.URL, "http://")
	cfg.Token = ""
	au, err := auth.New(auth.Options{Consul: cfg, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := au.Authenticate(context.Background(), secret); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || lookups.Load() != 1 {
		t.Fatalf("200 concurrent joins: %d failed, %d Consul lookups; want 0 and 1", failed.Load(), lookups.Load())
	}
}
