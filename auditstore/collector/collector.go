// Package collector is the audit collector's HTTP server: it authenticates
// senders (a shared token, or an mTLS client certificate whose SPIFFE id is
// on an allow list), assigns each event its place in the hash chain through
// the WAL, and acknowledges a batch only after it is fsynced.
package collector

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/pemcert"
)

// Config configures a collector server.
type Config struct {
	// WAL stores the records. Required; the server does not close it.
	WAL *wal.WAL
	// Tokens are accepted in the auditevent.TokenHeader header. Empty: tokens are
	// not accepted (then TLS with AllowSPIFFE is the only way in).
	Tokens []string
	// TLS, when set, serves HTTPS. Set ClientCAs there to accept client
	// certificates; a certificate is then verified and its SPIFFE id (URI SAN)
	// must be in AllowSPIFFE.
	TLS *tls.Config
	// AllowSPIFFE lists the SPIFFE ids (exact, e.g.
	// spiffe://dc1/ns/default/svc/gateway) allowed to send.
	AllowSPIFFE []string
	// MaxBodyBytes bounds one batch. Default 8 MiB.
	MaxBodyBytes int64
	// AckTimeout bounds how long a request waits for durability. Default 10s.
	AckTimeout time.Duration
	// Registry receives the collector's metrics. Default: a new registry.
	Registry *prometheus.Registry
}

// Server serves auditevent.IngestPath, /metrics and /healthz.
type Server struct {
	cfg  Config
	reg  *prometheus.Registry
	mux  *http.ServeMux
	http *http.Server

	batches  *prometheus.CounterVec
	events   prometheus.Counter
	ackLat   prometheus.Histogram
	rejected *prometheus.CounterVec
	dups     prometheus.Counter
}

// tokenSender is the identity of a sender that presented the shared token.
const tokenSender = "token"

// bindSource sets or checks e.Source against the authenticated sender and
// returns why the event is refused, or "".
func bindSource(e *auditevent.Event, who string) string {
	if who == tokenSender {
		if strings.HasPrefix(e.Source, "spiffe://") {
			return fmt.Sprintf("source %q is a SPIFFE id, but the sender authenticated with the shared token: send over mTLS with that identity's certificate", e.Source)
		}
		return ""
	}
	switch e.Source {
	case "":
		e.Source = who
	case who:
	default:
		return fmt.Sprintf("source %q is not the authenticated sender %s: a proxy may only send records as itself (leave source empty or set it to its SPIFFE id)", e.Source, who)
	}
	return ""
}

// New builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.WAL == nil {
		return nil, errors.New("collector: WAL is nil")
	}
	if len(cfg.Tokens) == 0 && (cfg.TLS == nil || cfg.TLS.ClientCAs == nil || len(cfg.AllowSPIFFE) == 0) {
		return nil, errors.New("collector: no way to authenticate senders: give a token (--token-file or MESHWARDEN_AUDIT_TOKEN), or TLS with --client-ca and --allow-spiffe")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, reg: cfg.Registry, mux: http.NewServeMux()}
	s.batches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_audit_batches_total", Help: "Batches received, by result."}, []string{"result"})
	s.events = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshwarden_audit_events_acked_total", Help: "Events acknowledged (durable)."})
	s.dups = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshwarden_audit_duplicates_total", Help: "Events whose id was already stored: answered with the original seq, not stored again."})
	s.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_audit_rejected_total", Help: "Requests rejected, by reason."}, []string{"reason"})
	s.ackLat = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meshwarden_audit_ack_seconds", Help: "Time from request to durable acknowledgement.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1}})
	for _, r := range []string{"ok", "error"} {
		s.batches.WithLabelValues(r) // every documented series from the start, at zero
	}
	for _, r := range []string{"unauthenticated", "spiffe_not_allowed", "too_large", "bad_batch", "invalid_event", "source_mismatch"} {
		s.rejected.WithLabelValues(r)
	}
	w := cfg.WAL
	st := func(f func(wal.Stats) float64) func() float64 { return func() float64 { return f(w.Stats()) } }
	s.reg.MustRegister(s.batches, s.events, s.rejected, s.ackLat, s.dups,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_wal_fsyncs_total", Help: "fsync calls on segments."}, st(func(x wal.Stats) float64 { return float64(x.Syncs) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_wal_commits_total", Help: "Group commits."}, st(func(x wal.Stats) float64 { return float64(x.Commits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_wal_bytes_total", Help: "Bytes written to segments."}, st(func(x wal.Stats) float64 { return float64(x.Bytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_wal_checkpoints_total", Help: "Signed checkpoints written."}, st(func(x wal.Stats) float64 { return float64(x.Checkpoints) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_wal_rotations_total", Help: "Segment rotations."}, st(func(x wal.Stats) float64 { return float64(x.Rotations) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshwarden_audit_wal_head_seq", Help: "Highest durable sequence number."}, st(func(x wal.Stats) float64 { return float64(x.Head) })),
	)
	s.mux.HandleFunc(auditevent.IngestPath, s.ingest)
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return s, nil
}

// Registry is the metrics registry (to add, e.g., exporter metrics).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler is the HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves on ln until ctx ends, then shuts down gracefully: in-flight
// batches get their acknowledgement (or error) before Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.http = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.cfg.TLS,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLS != nil {
			errc <- s.http.ServeTLS(ln, "", "")
		} else {
			errc <- s.http.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := s.http.Shutdown(sctx); err != nil {
		return fmt.Errorf("collector shutdown: %w", err)
	}
	return nil
}

// authenticate returns the sender's identity, or an HTTP status to reject.
func (s *Server) authenticate(r *http.Request) (string, int) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		for _, u := range leaf.URIs {
			if u.Scheme == "spiffe" && slices.Contains(s.cfg.AllowSPIFFE, u.String()) {
				return u.String(), 0
			}
		}
		return "", http.StatusForbidden
	}
	tok := r.Header.Get(auditevent.TokenHeader)
	if tok == "" {
		return "", http.StatusUnauthorized
	}
	for _, t := range s.cfg.Tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
			return tokenSender, 0
		}
	}
	return "", http.StatusUnauthorized
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a JSON audit batch", http.StatusMethodNotAllowed)
		return
	}
	who, code := s.authenticate(r)
	if code != 0 {
		reason := "unauthenticated"
		if code == http.StatusForbidden {
			reason = "spiffe_not_allowed"
		}
		s.rejected.WithLabelValues(reason).Inc()
		http.Error(w, http.StatusText(code), code)
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), r.ContentLength, s.cfg.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.rejected.WithLabelValues("too_large").Inc()
			http.Error(w, fmt.Sprintf("batch larger than %d bytes: send smaller batches", tooBig.Limit), http.StatusRequestEntityTooLarge)
			return
		}
		s.rejected.WithLabelValues("bad_batch").Inc()
		http.Error(w, "reading the batch failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	var b auditevent.Batch
	if err := decodeBatch(body, &b); err != nil {
		s.rejected.WithLabelValues("bad_batch").Inc()
		http.Error(w, "batch is not valid JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	for i := range b.Events {
		e := &b.Events[i]
		if err := e.Validate(); err != nil {
			s.rejected.WithLabelValues("invalid_event").Inc()
			http.Error(w, "event "+strconv.Itoa(i)+": "+err.Error(), http.StatusBadRequest)
			return
		}
		// The chain position is the collector's to assign, never the sender's.
		e.Seq, e.PrevHash, e.Hash = 0, "", ""
		// The record's source is who the collector authenticated: a
		// certificate sender's SPIFFE id (filled in when empty), never a
		// claim. A token proves no identity, so it cannot claim a SPIFFE id.
		if why := bindSource(e, who); why != "" {
			s.rejected.WithLabelValues("source_mismatch").Inc()
			http.Error(w, "event "+strconv.Itoa(i)+": "+why, http.StatusForbidden)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.AckTimeout)
	defer cancel()
	ack, err := s.cfg.WAL.Append(ctx, b.Events)
	if errors.Is(err, wal.ErrTooLarge) {
		s.rejected.WithLabelValues("too_large").Inc()
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		s.batches.WithLabelValues("error").Inc()
		http.Error(w, "not stored: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.batches.WithLabelValues("ok").Inc()
	s.events.Add(float64(ack.Accepted))
	s.dups.Add(float64(len(ack.Duplicates)))
	s.ackLat.Observe(time.Since(start).Seconds())
	w.Header().Set("Content-Type", auditevent.ContentType)
	out, _ := json.Marshal(ack)
	w.Write(out)
}

// readBody reads a request body of at most limit bytes (r enforces the
// limit), in one allocation when the sender gave its length.
func readBody(r io.Reader, contentLength, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if contentLength > 0 && contentLength <= limit {
		buf.Grow(int(contentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// batchOptions decode a batch as encoding/json did before (names matched
// without regard to case; invalid UTF-8 becomes U+FFFD, which the WAL
// stores anyway), but strictly where v1 was lax: a member given twice and
// anything after the batch are refused, so no two parsers can read one
// batch differently.
var batchOptions = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true), jsontext.AllowInvalidUTF8(true))

// decodeBatch parses one JSON batch with encoding/json/v2's decoder (the
// module that mirrors it until Go 1.27), which costs about a third of
// encoding/json's reflection decoder per event: the collector's largest
// cost per event before.
func decodeBatch(data []byte, b *auditevent.Batch) error {
	return jsonv2.Unmarshal(data, b, batchOptions)
}

// ServerTLS builds a server TLS config: cert/key for the server, and, if
// clientCA is set, verification of client certificates that are offered
// (senders without one may still use a token).
func ServerTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pool, err := pemcert.PoolFile(clientCA, "--client-ca")
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// RegisterConsul registers the collector in the local Consul agent as
// meshnames.CollectorServiceName with an HTTP health check on /healthz, and returns
// a function that deregisters it.
func RegisterConsul(c *api.Client, addr net.Addr, useTLS bool) (func() error, error) {
	host, portS, err := net.SplitHostPort(addr.String())
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portS)
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	id := meshnames.CollectorServiceName + "-" + host + "-" + portS
	advertise, checkHost := host, host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// Listening on all interfaces: let Consul advertise the node's address.
		advertise, checkHost = "", "127.0.0.1"
	}
	reg := &api.AgentServiceRegistration{
		ID: id, Name: meshnames.CollectorServiceName, Address: advertise, Port: port,
		Meta: map[string]string{"ingest_path": auditevent.IngestPath, "scheme": scheme},
		Check: &api.AgentServiceCheck{
			HTTP: scheme + "://" + net.JoinHostPort(checkHost, portS) + "/healthz", TLSSkipVerify: useTLS,
			Interval: "5s", Timeout: "2s", DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		return nil, fmt.Errorf("register %s in consul: %w", meshnames.CollectorServiceName, err)
	}
	return func() error { return c.Agent().ServiceDeregister(id) }, nil
}
