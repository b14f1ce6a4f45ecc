// Package pebbleagent starts and stops a real Pebble ACME test CA
// (github.com/letsencrypt/pebble/v2) on free loopback ports, for tests of
// the ACME issuer. The binary comes from MESHWARDEN_PEBBLE, else from the
// build cache that scripts/ensure-pebble.sh fills, else from PATH.
//
// Pebble validates HTTP-01 challenges for real: it fetches
// http://<name>:<ChallengePort>/.well-known/acme-challenge/<token>, resolving
// names with the system resolver, so tests order certificates for
// "localhost" and serve the challenge on 127.0.0.1:<ChallengePort>.
package pebbleagent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/pemcert"
	"github.com/meshwarden/meshwarden/internal/testenv/proc"
)

// Options configure a Pebble instance.
type Options struct {
	// Binary is the pebble executable; empty means [FindBinary].
	Binary string
	// ChallengePort is where Pebble fetches HTTP-01 responses (its
	// httpPort). Required: the port of the test's challenge server.
	ChallengePort int
	// TLSPort is where Pebble checks TLS-ALPN-01; zero picks a free port
	// (nothing listens there unless the test serves it).
	TLSPort int
	// Validity is the lifetime of issued certificates; zero means 90 days.
	Validity time.Duration
	// Dir holds the generated config and listener key; empty means a new
	// temporary directory, removed by Stop.
	Dir string
	// Log receives Pebble's output; nil discards it.
	Log io.Writer
	// Ports, if non-zero, are reused (to restart on the same address).
	Ports Ports
}

// Ports are Pebble's listening ports on 127.0.0.1.
type Ports struct{ ACME, Management int }

// Agent is a running Pebble.
type Agent struct {
	opts   Options
	Ports  Ports
	ownDir bool
	caPool *x509.CertPool
	proc   *proc.Proc
}

// ErrNoBinary says no pebble binary could be found.
var ErrNoBinary = errors.New("no pebble binary: run scripts/ensure-pebble.sh to build it once, or set MESHWARDEN_PEBBLE")

// FindBinary locates the pebble executable.
func FindBinary() (string, error) {
	if p := os.Getenv("MESHWARDEN_PEBBLE"); p != "" {
		return p, nil
	}
	cache := os.Getenv("MESHWARDEN_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "meshwarden")
		}
	}
	_, file, _, _ := runtime.Caller(0)
	mod := filepath.Join(filepath.Dir(file), "..", "..", "tools", "pebble", "go.mod")
	if data, err := os.ReadFile(mod); err == nil && cache != "" {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
			if len(f) >= 2 && f[0] == "github.com/letsencrypt/pebble/v2" {
				p := filepath.Join(cache, "pebble-"+f[1], "pebble")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
		}
	}
	if cache != "" {
		if m, _ := filepath.Glob(filepath.Join(cache, "pebble-*", "pebble")); len(m) > 0 {
			return m[len(m)-1], nil
		}
	}
	if p, err := exec.LookPath("pebble"); err == nil {
		return p, nil
	}
	return "", ErrNoBinary
}

// Ensure builds the pinned Pebble once with scripts/ensure-pebble.sh of the
// source tree this package was built from (about 30 s the first time, then
// cached) and returns its path, so that `make test` sets itself up on a
// fresh machine.
func Ensure(ctx context.Context) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "ensure-pebble.sh")
	if _, err := os.Stat(script); err != nil {
		return "", ErrNoBinary
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s failed: %v\n%s", ErrNoBinary, script, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// Start launches Pebble and waits until its directory answers.
func Start(ctx context.Context, opts Options) (*Agent, error) {
	if opts.ChallengePort == 0 {
		return nil, errors.New("pebbleagent: ChallengePort is zero: give the port of your HTTP-01 challenge server")
	}
	if opts.Binary == "" {
		b, err := FindBinary()
		if err != nil {
			if b, err = Ensure(ctx); err != nil {
				return nil, err
			}
		}
		opts.Binary = b
	}
	if opts.Validity <= 0 {
		opts.Validity = 90 * 24 * time.Hour
	}
	a := &Agent{opts: opts, Ports: opts.Ports}
	if a.Ports == (Ports{}) || opts.TLSPort == 0 {
		ps, err := proc.FreePorts(3)
		if err != nil {
			return nil, err
		}
		if a.Ports == (Ports{}) {
			a.Ports = Ports{ACME: ps[0], Management: ps[1]}
		}
		if a.opts.TLSPort == 0 {
			a.opts.TLSPort = ps[2]
		}
	}
	if a.opts.Dir == "" {
		d, err := os.MkdirTemp("", "pebble-")
		if err != nil {
			return nil, fmt.Errorf("pebbleagent: temp dir: %w", err)
		}
		a.opts.Dir, a.ownDir = d, true
	}
	if err := a.writeConfig(); err != nil {
		a.cleanup()
		return nil, err
	}
	if err := a.start(ctx); err != nil {
		a.cleanup()
		return nil, err
	}
	return a, nil
}

func (a *Agent) writeConfig() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pebble listener (test)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IsCA:         true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	cert, _ := x509.ParseCertificate(der)
	a.caPool = x509.NewCertPool()
	a.caPool.AddCert(cert)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(a.opts.Dir, "listener.pem"), filepath.Join(a.opts.Dir, "listener-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	secs := int64(a.opts.Validity / time.Second)
	if secs < 1 {
		secs = 1
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(a.Ports.ACME),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(a.Ports.Management),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       a.opts.ChallengePort,
		"tlsPort":                        a.opts.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "test profile", "validityPeriod": secs},
		},
	}}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(a.opts.Dir, "pebble-config.json"), data, 0o600)
}

func (a *Agent) start(ctx context.Context) error {
	child, err := proc.StartSpec(proc.Spec{
		Name: "pebble", Bin: a.opts.Binary, Args: []string{"-config", filepath.Join(a.opts.Dir, "pebble-config.json")},
		Env: []string{
			"PEBBLE_VA_NOSLEEP=1",      // validate at once, no random delay
			"PEBBLE_WFE_NONCEREJECT=0", // no deliberate badNonce errors
			"PEBBLE_AUTHZREUSE=0",      // every order is validated anew
		},
		Log: a.opts.Log, RawLog: true,
	})
	if err != nil {
		return err
	}
	a.proc = child
	client := a.HTTPClient()
	err = child.WaitReady(ctx, 30*time.Second, 25*time.Millisecond, proc.HTTPOK(client, a.DirectoryURL()))
	if err != nil {
		a.Stop()
		return fmt.Errorf("start pebble: %w", err)
	}
	return nil
}

// Output returns the last lines Pebble printed (for test failure messages).
func (a *Agent) Output() string {
	if a.proc == nil {
		return ""
	}
	return a.proc.Tail(30)
}

// DirectoryURL is the ACME directory.
func (a *Agent) DirectoryURL() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Ports.ACME)) + "/dir"
}

// HTTPClient returns a client that trusts Pebble's listener certificate.
func (a *Agent) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: a.caPool, MinVersion: tls.VersionTLS12},
		},
	}
}

// Roots returns Pebble's current issuing root (it makes a new one on
// every start), from its management API.
func (a *Agent) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	u := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Ports.Management)) + "/roots/0"
	resp, err := httpget.Get(ctx, a.HTTPClient(), u)
	if err != nil {
		return nil, fmt.Errorf("pebble roots: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("pebble roots: %w", err)
	}
	out, err := pemcert.Certificates(data)
	if err != nil {
		return nil, fmt.Errorf("pebble roots (status %d): %w", resp.StatusCode, err)
	}
	return out, nil
}

// Stop terminates Pebble (SIGTERM, then SIGKILL after 5s) and waits. The
// agent can be started again with Restart.
func (a *Agent) Stop() {
	if a.proc != nil {
		a.proc.Stop(5 * time.Second)
	}
}

// Restart stops Pebble and starts it again on the same ports (with a new
// issuing root: Pebble keeps no state).
func (a *Agent) Restart(ctx context.Context) error {
	a.Stop()
	return a.start(ctx)
}

// Close stops Pebble and removes its temporary directory.
func (a *Agent) Close() {
	a.Stop()
	a.cleanup()
}

func (a *Agent) cleanup() {
	if a.ownDir {
		_ = os.RemoveAll(a.opts.Dir)
	}
}
