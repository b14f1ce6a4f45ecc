// Package demo runs Meshwarden's demonstration: a real Consul agent, the
// control plane, the audit collector, the gateway and two versions of a
// small upstream service, with dyed, audited and traced traffic. The e2e
// suite drives the same stack and asserts what the demo prints.
package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/certs"
)

// Echo is what the demo upstream answers: who served the request and the
// Meshwarden-relevant headers it received. Over mTLS it also names the
// certificates of the connection that carried the request: the client's
// (the gateway's leaf) and the one the upstream served.
type Echo struct {
	Service string            `json:"service"`
	Version string            `json:"version"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	TLS     *EchoTLS          `json:"tls,omitempty"`
}

// EchoTLS describes the mTLS connection a request arrived on. Serials are
// hex; issuer key ids are the leaves' authority key ids (hex), i.e. the
// subject key id of the CA that signed them.
type EchoTLS struct {
	ClientID       string `json:"client_id"`
	ClientSerial   string `json:"client_serial"`
	ClientIssuerID string `json:"client_issuer_key_id"`
	ServerSerial   string `json:"server_serial"`
	ServerIssuerID string `json:"server_issuer_key_id"`
}

// Upstream is a small HTTP service registered in Consul with meta
// version=<Version>: it answers every request with an [Echo]. Started with
// [StartUpstreamMTLS] it is a Consul Connect-native service: it serves TLS
// with its own leaf from the Consul agent and admits only one client
// SPIFFE id.
type Upstream struct {
	Service, Version string
	// Addr is where traffic is served (plain HTTP, or mTLS when Scheme is
	// "https"); HealthAddr serves the plain /healthz Consul checks.
	Addr, HealthAddr string
	Scheme           string
	srv              *http.Server
	health           *http.Server
	ln               net.Listener

	// mTLS only.
	certs       *certs.Manager
	stopCerts   context.CancelFunc
	certsDone   chan struct{}
	allow       string
	handshakes  atomic.Int64
	rejected    atomic.Int64
	lastClient  atomic.Pointer[x509.Certificate]
	lastRejectM sync.Mutex
	lastReject  string

	// failPercent of requests answer 503 (a bad version, for rollouts).
	failPercent atomic.Int32
	served      atomic.Int64
}

// SetFailPercent makes pct % of requests (0..100, at random) answer 503,
// as a bad release would.
func (u *Upstream) SetFailPercent(pct int) { u.failPercent.Store(int32(pct)) }

// Served counts requests answered (errors included).
func (u *Upstream) Served() int64 { return u.served.Load() }

// StartUpstream listens on a free loopback port and serves plain HTTP.
func StartUpstream(service, version string) (*Upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: listen: %w", service, version, err)
	}
	u := &Upstream{Service: service, Version: version, Addr: ln.Addr().String(), HealthAddr: ln.Addr().String(), Scheme: "http", ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/", u.echo)
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

// MTLSOptions make an upstream a Consul Connect-native service.
type MTLSOptions struct {
	// Consul is the local agent: it signs the upstream's leaf (SPIFFE id
	// .../svc/<service>) and provides the trust bundle.
	Consul *api.Client
	// AllowClient is the only client SPIFFE id admitted (the gateway's,
	// e.g. translate.SPIFFEID(td, dc, meshnames.GatewayNodeCluster)). Required.
	AllowClient string
	// Logger receives the certificate manager's renewals and alarms; nil
	// discards them.
	Logger *slog.Logger
	// WaitLeaf bounds the wait for the first leaf; zero means 30s.
	WaitLeaf time.Duration
}

// connKey keys the per-connection record of the certificate served.
type connKey struct{}

// connTLS is what one connection's handshake served.
type connTLS struct {
	served atomic.Pointer[certs.Certificate]
}

// StartUpstreamMTLS starts a Connect-native upstream: its own certificate
// manager takes the leaf for service from the Consul agent (renewals and
// root rotations arrive by blocking queries and are served from the next
// handshake on), it serves TLS requiring a client certificate that chains
// to the live trust bundle and carries the SPIFFE id o.AllowClient, and it
// closes (after the current response) connections established under a
// certificate it has since replaced or whose client leaf was signed by
// another CA key than its own, so that rotated certificates stop being
// used. /healthz is served in plain HTTP on a separate loopback port.
func StartUpstreamMTLS(ctx context.Context, service, version string, o MTLSOptions) (_ *Upstream, err error) {
	if o.Consul == nil || o.AllowClient == "" {
		return nil, fmt.Errorf("upstream %s/%s: mTLS needs a Consul client and the allowed client SPIFFE id", service, version)
	}
	if o.WaitLeaf <= 0 {
		o.WaitLeaf = 30 * time.Second
	}
	m, err := certs.NewManager(certs.Options{
		Issuer: certs.NewConsulIssuer(o.Consul, certs.ConsulOptions{WaitTime: time.Minute}),
		Logger: o.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: certificate manager: %w", service, version, err)
	}
	u := &Upstream{Service: service, Version: version, Scheme: "https", certs: m, allow: o.AllowClient, certsDone: make(chan struct{})}
	var runCtx context.Context
	runCtx, u.stopCerts = context.WithCancel(context.Background())
	go func() { defer close(u.certsDone); _ = m.Run(runCtx) }()
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = u.Close(cctx)
		}
	}()
	m.Track(service)
	wctx, cancel := context.WithTimeout(ctx, o.WaitLeaf)
	defer cancel()
	if _, err := m.Wait(wctx, service); err != nil {
		return nil, fmt.Errorf("upstream %s/%s: leaf from the Consul agent: %w", service, version, err)
	}

	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: listen (health): %w", service, version, err)
	}
	u.HealthAddr = hln.Addr().String()
	hmux := http.NewServeMux()
	hmux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	u.health = &http.Server{Handler: hmux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.health.Serve(hln) }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: listen: %w", service, version, err)
	}
	u.ln, u.Addr = ln, ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/", u.echo)
	u.srv = &http.Server{
		Handler:           u.closeStale(mux),
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         u.serverTLS(),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, &connTLS{})
		},
		// Failed handshakes are counted (Handshakes) rather than logged.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = u.srv.ServeTLS(ln, "", "") }()
	return u, nil
}

// serverTLS is the manager's mutual-TLS server config with the served
// certificate recorded per connection and handshakes counted.
func (u *Upstream) serverTLS() *tls.Config {
	cfg := u.certs.ServerTLSConfig(u.Service, certs.AllowSPIFFE(u.allow))
	verify := cfg.VerifyConnection
	cfg.NextProtos = []string{"h2", "http/1.1"}
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := u.certs.Certificate(u.Service)
		if c == nil {
			return nil, fmt.Errorf("upstream %s: no certificate yet", u.Service)
		}
		if slot, ok := h.Context().Value(connKey{}).(*connTLS); ok {
			slot.served.Store(c)
		}
		return c.TLS(), nil
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			u.rejected.Add(1)
			u.lastRejectM.Lock()
			u.lastReject = err.Error()
			u.lastRejectM.Unlock()
			return err
		}
		u.handshakes.Add(1)
		u.lastClient.Store(cs.PeerCertificates[0])
		return nil
	}
	return cfg
}

// closeStale asks the client to close a connection after this response when
// the connection was established under a certificate the upstream has since
// replaced, or when the client's leaf was signed by another CA key than the
// upstream's current leaf (a root rotation in progress): the next request
// handshakes again with the current certificates. "Connection: close" is a
// clean end for HTTP/1.1 and a graceful GOAWAY for HTTP/2, so no request
// fails.
func (u *Upstream) closeStale(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			cur := u.certs.Certificate(u.Service)
			slot, _ := r.Context().Value(connKey{}).(*connTLS)
			stale := slot == nil || cur == nil || slot.served.Load() != cur
			if !stale && len(r.TLS.PeerCertificates) > 0 {
				peer := r.TLS.PeerCertificates[0].AuthorityKeyId
				stale = len(peer) > 0 && len(cur.Leaf.AuthorityKeyId) > 0 && !bytes.Equal(peer, cur.Leaf.AuthorityKeyId)
			}
			if stale {
				w.Header().Set("Connection", "close")
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (u *Upstream) echo(w http.ResponseWriter, r *http.Request) {
	u.served.Add(1)
	// At random, as a bad build fails: a retry may or may not succeed.
	if pct := int64(u.failPercent.Load()); pct > 0 && rand.Int64N(100) < pct {
		w.Header().Set("x-served-by", u.Service+"-"+u.Version)
		http.Error(w, "injected failure ("+strconv.FormatInt(pct, 10)+"% of requests)", http.StatusServiceUnavailable)
		return
	}
	e := Echo{Service: u.Service, Version: u.Version, Method: r.Method, Path: r.URL.Path, Headers: map[string]string{}}
	for k, v := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-mw-") || lk == "traceparent" || lk == "tracestate" || lk == "baggage" || strings.HasPrefix(lk, "x-b3") || lk == "b3" || lk == "x-user-id" {
			e.Headers[lk] = strings.Join(v, ",")
		}
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		peer := r.TLS.PeerCertificates[0]
		t := &EchoTLS{ClientID: spiffeOf(peer), ClientSerial: hex.EncodeToString(peer.SerialNumber.Bytes()),
			ClientIssuerID: hex.EncodeToString(peer.AuthorityKeyId)}
		if slot, ok := r.Context().Value(connKey{}).(*connTLS); ok {
			if c := slot.served.Load(); c != nil {
				t.ServerSerial, t.ServerIssuerID = c.Serial(), hex.EncodeToString(c.Leaf.AuthorityKeyId)
			}
		}
		e.TLS = t
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-served-by", u.Service+"-"+u.Version)
	_ = json.NewEncoder(w).Encode(e)
}

func spiffeOf(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// Certs returns the upstream's certificate manager (nil without mTLS).
func (u *Upstream) Certs() *certs.Manager { return u.certs }

// Certificate returns the leaf the upstream serves now (nil without mTLS).
func (u *Upstream) Certificate() *certs.Certificate {
	if u.certs == nil {
		return nil
	}
	return u.certs.Certificate(u.Service)
}

// HandshakeStats counts the upstream's mTLS handshakes.
type HandshakeStats struct {
	// Accepted and Rejected count completed and refused handshakes
	// (refused: no client certificate, a chain outside the trust bundle or
	// a SPIFFE id other than the allowed one).
	Accepted, Rejected int64
	// LastClient is the client leaf of the latest accepted handshake.
	LastClient *x509.Certificate
	// LastRejection is why the latest refused handshake was refused.
	LastRejection string
}

// Handshakes returns the upstream's handshake counts.
func (u *Upstream) Handshakes() HandshakeStats {
	u.lastRejectM.Lock()
	defer u.lastRejectM.Unlock()
	return HandshakeStats{Accepted: u.handshakes.Load(), Rejected: u.rejected.Load(), LastClient: u.lastClient.Load(), LastRejection: u.lastReject}
}

// ID is the instance's Consul service id.
func (u *Upstream) ID() string { return u.Service + "-" + u.Version }

// Register adds the instance to Consul with meta version and an HTTP check
// of /healthz. An mTLS upstream is registered Connect-native: the plane's
// mTLS clusters reach its address and port with TLS and check its SPIFFE id.
// The instance is already serving when it registers, so its check starts
// passing (Consul's default is critical until the first run), and the
// check's timeout allows for a starved machine: a dead instance still turns
// critical at once, since its port refuses connections.
func (u *Upstream) Register(c *api.Client) error {
	host, portStr, err := net.SplitHostPort(u.Addr)
	if err != nil {
		return fmt.Errorf("register %s: address %q: %w", u.ID(), u.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("register %s: port %q: %w", u.ID(), portStr, err)
	}
	reg := &api.AgentServiceRegistration{
		ID: u.ID(), Name: u.Service, Address: host, Port: port,
		Tags: []string{"version=" + u.Version},
		Meta: map[string]string{"version": u.Version},
		Check: &api.AgentServiceCheck{
			HTTP: "http://" + u.HealthAddr + "/healthz", Interval: "1s", Timeout: "3s",
			Status: api.HealthPassing, DeregisterCriticalServiceAfter: "1m",
		},
	}
	if u.certs != nil {
		reg.Connect = &api.AgentServiceConnect{Native: true}
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		return fmt.Errorf("register %s in consul: %w", u.ID(), err)
	}
	return nil
}

// Close stops serving and, with mTLS, stops the certificate manager.
func (u *Upstream) Close(ctx context.Context) error {
	var errs []error
	for _, s := range []*http.Server{u.srv, u.health} {
		if s == nil {
			continue
		}
		if err := s.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if u.stopCerts != nil {
		u.stopCerts()
		select {
		case <-u.certsDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("upstream %s: certificate manager did not stop: %w", u.ID(), ctx.Err()))
		}
	}
	return errors.Join(errs...)
}
