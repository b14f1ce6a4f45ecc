package demo

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
)

// prepareCredentials creates each part's Consul ACL token (as a platform
// team would with `consul acl token create`) and writes them, and the
// Connect CA roots, to files in the work dir.
func (s *Stack) prepareCredentials(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, t := range []struct {
		file *string
		name string
		spec consulagent.TokenSpec
	}{
		{&s.PlaneTokenFile, "plane.token", consulagent.TokenSpec{Description: "meshwarden control plane", Rules: auth.PlaneTokenRules}},
		{&s.GatewayTokenFile, "gateway.token", consulagent.TokenSpec{Description: "meshwarden gateway", Services: []string{meshnames.GatewayNodeCluster}}},
		{&s.OperatorTokenFile, "operator.token", consulagent.TokenSpec{Description: "demo operator", Rules: auth.OperatorTokenRules}},
		{&s.CollectorTokenFile, "collector.token", consulagent.TokenSpec{Description: "meshwarden audit collector", Services: []string{meshnames.CollectorServiceName}}},
	} {
		*t.file = filepath.Join(s.opts.WorkDir, t.name)
		if _, err := os.Stat(*t.file); err == nil {
			continue // a restarted stack keeps its tokens (Consul persists them)
		}
		secret, _, err := consulagent.CreateToken(cctx, s.ConsulAPI, t.spec)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*t.file, []byte(secret+"\n"), 0o600); err != nil {
			return err
		}
	}
	s.step("Consul ACL tokens: plane, gateway (service identity %s), operator (operator:read, mesh:write), collector", meshnames.GatewayNodeCluster)
	// A fresh agent initialises its Connect CA shortly after it elects a
	// leader: wait (bounded) until it has a root.
	var roots *api.CARootList
	for {
		var err error
		roots, _, err = s.ConsulAPI.Agent().ConnectCARoots((&api.QueryOptions{}).WithContext(cctx))
		if err == nil && len(roots.Roots) > 0 {
			break
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("read Connect CA roots: the agent has none after 30s (last error: %v): is Connect enabled?", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var pem strings.Builder
	for _, r := range roots.Roots {
		pem.WriteString(strings.TrimSpace(r.RootCertPEM) + "\n")
	}
	s.CAFile = filepath.Join(s.opts.WorkDir, "connect-ca.pem")
	return os.WriteFile(s.CAFile, []byte(pem.String()), 0o644)
}

// AdminClient returns an HTTP client of the plane's admin API holding
// token file tokenFile (e.g. OperatorTokenFile).
func (s *Stack) AdminClient(tokenFile string) (*http.Client, error) {
	o := auth.ClientOptions{CAFile: s.CAFile, TokenFile: tokenFile, Insecure: s.opts.InsecurePlane}
	return o.HTTPClient()
}

// AdminURL is the URL of path on the plane's admin API.
func (s *Stack) AdminURL(path string) string {
	if s.opts.InsecurePlane {
		return "http://" + s.PlaneAdmin + path
	}
	return "https://" + s.PlaneAdmin + path
}

// PlaneFlags are the CLI flags that reach the plane's admin API as the
// demo operator.
func (s *Stack) PlaneFlags() []string {
	if s.opts.InsecurePlane {
		return []string{"--plane", s.PlaneAdmin, "--insecure"}
	}
	return []string{"--plane", s.PlaneAdmin, "--ca-file", s.CAFile, "--token-file", s.OperatorTokenFile}
}

// ServiceToken creates a token for a sidecar of service (service identity:
// service:write on it), as `consul acl token create -service-identity`.
func (s *Stack) ServiceToken(ctx context.Context, service string) (string, error) {
	secret, _, err := consulagent.CreateToken(ctx, s.ConsulAPI, consulagent.TokenSpec{Description: service + " sidecar", Services: []string{service}})
	return secret, err
}
