package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/auditstore/export"
	"github.com/meshwarden/meshwarden/auditstore/kafka"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/internal/logflags"
)

// RunConfig is a whole collector process: its WAL, signing key, senders'
// credentials, listener, exporters and Consul registration. The zero value
// of a field takes the default named in its comment (see WithDefaults). The
// CLI flag of each field is given in brackets, and errors name it.
type RunConfig struct {
	// Dir is the WAL directory (--dir); required.
	Dir string
	// KeyFile is the Ed25519 private key (PEM) that signs checkpoints (--key); required.
	KeyFile string
	// Listen is the address to serve on (--listen). Default 127.0.0.1:7480.
	Listen string
	// AddrFile, when set, receives the bound address once serving (--addr-file).
	AddrFile string
	// Tokens are shared sender tokens; TokenFile adds the one it holds (--token-file).
	Tokens    []string
	TokenFile string
	// TLSCert and TLSKey serve HTTPS; ClientCA verifies sender certificates
	// whose SPIFFE ids AllowSPIFFE lists (--tls-cert, --tls-key, --client-ca, --allow-spiffe).
	TLSCert, TLSKey, ClientCA string
	AllowSPIFFE               []string
	// WAL tuning (--segment-size, --checkpoint-every, --checkpoint-interval,
	// --retain-segments, --retain-age); zero values take the WAL's defaults.
	SegmentSize        int64
	CheckpointEvery    uint64
	CheckpointInterval time.Duration
	RetainSegments     int
	RetainAge          time.Duration
	// MaxBodyBytes is the largest accepted batch body (--max-batch-bytes).
	MaxBodyBytes int64
	// ConsulAddress, when set, registers the collector in that agent (--consul).
	ConsulAddress string
	// NATS, when set, exports to JetStream (--nats*); its Dir and Logf are filled in.
	NATS *export.Config
	// Kafka, when set, exports to Kafka (--kafka-*); its Dir and Logf are filled in.
	Kafka *kafka.Config
	// Log receives the collector's logs. Default: discarded.
	Log *slog.Logger
}

// WithDefaults returns c with every unset field that has a default set.
func (c RunConfig) WithDefaults() RunConfig {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7480"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports a configuration the collector cannot run with. It reads
// nothing but c.
func (c RunConfig) Validate() error {
	if c.Dir == "" || c.KeyFile == "" {
		return errors.New("--dir and --key are required (make a key with `meshwarden audit keygen`)")
	}
	return nil
}

// Process is a running collector. Start makes one; Close stops it.
type Process struct {
	cfg      RunConfig
	log      *slog.Logger
	logf     func(string, ...any) // for the WAL and the exporters
	wal      *wal.WAL
	srv      *Server
	ln       net.Listener
	nats     *export.Exporter
	kafka    *kafka.Exporter
	dereg    func() error
	cancel   context.CancelFunc // stops the server and the exporters
	bg       sync.WaitGroup     // the exporters
	errc     chan error         // Serve's failure, for Err
	done     chan struct{}      // closed when Serve has returned
	serveErr error              // Serve's result, set before done closes
	serving  bool               // Serve owns (and closes) ln

	closeOnce sync.Once
	closeErr  error
}

// Run starts the collector, serves until ctx ends or the server fails, then
// stops it gracefully: in-flight batches are acknowledged and a final
// checkpoint is written.
func Run(ctx context.Context, cfg RunConfig) error {
	return lifecycle.Run(ctx, func(ctx context.Context) (*Process, error) { return Start(ctx, cfg) })
}

// Start applies cfg's defaults, validates it, opens the WAL, binds the
// listener and starts serving and exporting in the background. On error
// nothing is left running and the WAL is closed.
func Start(ctx context.Context, cfg RunConfig) (_ *Process, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Process{cfg: cfg, log: cfg.Log, logf: logflags.Printf(cfg.Log), errc: make(chan error, 1), done: make(chan struct{})}
	ctx, p.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	for _, step := range []func(context.Context) error{p.openWAL, p.newServer, p.listen, p.register} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	p.export(ctx)
	if err := p.writeAddrFile(); err != nil {
		return nil, err
	}
	p.log.Info("serving", "path", auditevent.IngestPath, "addr", p.ln.Addr().String())
	p.serving = true
	go func() {
		p.serveErr = p.srv.Serve(ctx, p.ln)
		if p.serveErr != nil {
			p.errc <- p.serveErr
		}
		close(p.done)
	}()
	return p, nil
}

// openWAL makes the exporters (their cursors bound retention) and opens the WAL.
func (p *Process) openWAL(ctx context.Context) error {
	key, err := wal.LoadPrivateKey(p.cfg.KeyFile)
	if err != nil {
		return err
	}
	if p.cfg.NATS != nil {
		nc := *p.cfg.NATS
		nc.Dir, nc.Logf = p.cfg.Dir, p.logf
		if p.nats, err = export.New(nc); err != nil {
			return err
		}
	}
	if p.cfg.Kafka != nil {
		kc := *p.cfg.Kafka
		kc.Dir, kc.Logf = p.cfg.Dir, p.logf
		if p.kafka, err = kafka.New(kc); err != nil {
			return err
		}
	}
	wopt := wal.Options{
		Dir: p.cfg.Dir, SegmentSize: p.cfg.SegmentSize, CheckpointEvery: p.cfg.CheckpointEvery,
		CheckpointInterval: p.cfg.CheckpointInterval, Signer: key, RetainSegments: p.cfg.RetainSegments,
		RetainAge: p.cfg.RetainAge, Logf: p.logf,
	}
	// Retention keeps every segment an exporter has not delivered: with
	// both on, the slower cursor counts.
	var cursors []func() uint64
	if p.nats != nil && !p.cfg.NATS.CheckpointsOnly { // a checkpoints-only witness holds no records
		cursors = append(cursors, p.nats.Exported)
	}
	if p.kafka != nil {
		cursors = append(cursors, p.kafka.Exported)
	}
	wopt.ExportedSeq = wal.MinExported(cursors...)
	if p.wal, err = wal.Open(ctx, wopt); err != nil {
		return err
	}
	st := p.wal.Stats()
	p.log.Info("wal opened", "dir", p.cfg.Dir, "head_seq", st.Head, "recovery_truncated_bytes", st.RecoveredTruncatedBytes)
	return nil
}

// newServer reads the sender token file and builds the ingest server.
func (p *Process) newServer(context.Context) error {
	tokens := append([]string(nil), p.cfg.Tokens...)
	if p.cfg.TokenFile != "" {
		b, err := os.ReadFile(p.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("read --token-file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			tokens = append(tokens, t)
		}
	}
	cfg := Config{WAL: p.wal, Tokens: tokens, AllowSPIFFE: p.cfg.AllowSPIFFE, MaxBodyBytes: p.cfg.MaxBodyBytes, Registry: prometheus.NewRegistry()}
	if p.cfg.TLSCert != "" || p.cfg.TLSKey != "" {
		var err error
		if cfg.TLS, err = ServerTLS(p.cfg.TLSCert, p.cfg.TLSKey, p.cfg.ClientCA); err != nil {
			return err
		}
	}
	srv, err := New(cfg)
	if err != nil {
		return err
	}
	p.srv = srv
	return nil
}

func (p *Process) listen(context.Context) error {
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on --listen %s: %w", p.cfg.Listen, err)
	}
	p.ln = ln
	return nil
}

// register registers the collector in Consul when ConsulAddress is set.
func (p *Process) register(context.Context) error {
	if p.cfg.ConsulAddress == "" {
		return nil
	}
	cc := api.DefaultConfig() // CONSUL_HTTP_TOKEN(_FILE) for registration with ACLs on
	cc.Address = p.cfg.ConsulAddress
	c, err := api.NewClient(cc)
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	p.dereg, err = RegisterConsul(c, p.ln.Addr(), p.srv.cfg.TLS != nil)
	return err
}

// export starts the exporters, with their metrics.
func (p *Process) export(ctx context.Context) {
	reg := p.srv.Registry()
	if x := p.nats; x != nil {
		x.Follow(p.wal.Durable, p.wal.Changed)
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_export_failures_total", Help: "Export outages."}, func() float64 { return float64(x.Failures()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshwarden_audit_witness_seq", Help: "Seq of the newest signed checkpoint JetStream (the witness) acknowledged."}, func() float64 { return float64(x.Witnessed()) }),
		)
		if !p.cfg.NATS.CheckpointsOnly { // records are exported: their cursor matters (MeshwardenAuditExportLag)
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshwarden_audit_export_cursor_seq", Help: "Last sequence acknowledged by JetStream."}, func() float64 { return float64(x.Exported()) }))
		}
		p.runExporter(ctx, "exporter", x.Run)
	}
	if x := p.kafka; x != nil {
		x.Follow(p.wal.Durable, p.wal.Changed)
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshwarden_audit_kafka_cursor_seq", Help: "Last sequence acknowledged by Kafka (kafka.cursor)."}, func() float64 { return float64(x.Exported()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_kafka_failures_total", Help: "Kafka export sessions abandoned (broker unreachable, produce refused, acks stalled)."}, func() float64 { return float64(x.Failures()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_kafka_acked_total", Help: "Records acknowledged by Kafka, re-sends included."}, func() float64 { return float64(x.Acked()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshwarden_audit_kafka_checkpoints_total", Help: "Signed checkpoints acknowledged by Kafka."}, func() float64 { return float64(x.CheckpointsExported()) }),
		)
		k := p.cfg.Kafka
		p.log.Info("exporting to kafka", "brokers", strings.Join(k.Brokers, ","), "topic", k.Topic, "checkpoint_topic", k.CheckpointTopic, "from_seq", x.Exported()+1)
		p.runExporter(ctx, "kafka exporter", x.Run)
	}
}

func (p *Process) runExporter(ctx context.Context, what string, run func(context.Context) error) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error(what+" stopped", "err", err)
		}
	}()
}

// writeAddrFile writes the bound address, atomically, for scripts and tests.
func (p *Process) writeAddrFile() error {
	if p.cfg.AddrFile == "" {
		return nil
	}
	tmp := p.cfg.AddrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(p.ln.Addr().String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.cfg.AddrFile)
}

// Err reports the server's failure while the collector runs.
func (p *Process) Err() <-chan error { return p.errc }

// Addr returns the bound listen address.
func (p *Process) Addr() net.Addr { return p.ln.Addr() }

// Close stops the collector gracefully: the server acknowledges the batches
// in flight, the exporters stop, the collector deregisters and the WAL writes
// its final checkpoint. Later calls return the first call's result.
func (p *Process) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		<-p.done
		p.closeErr = p.serveErr
		p.log.Info("stopped", "head_seq", p.wal.Durable())
		p.release()
	})
	return p.closeErr
}

// release stops the exporters, deregisters and closes the WAL; it is what a
// failed Start and Close have in common.
func (p *Process) release() {
	p.cancel()
	if p.ln != nil && !p.serving {
		_ = p.ln.Close()
	}
	p.bg.Wait()
	if p.dereg != nil {
		if err := p.dereg(); err != nil {
			p.log.Error("deregister from consul", "err", err)
		}
		p.dereg = nil
	}
	if p.wal != nil {
		if err := p.wal.Close(); err != nil {
			p.log.Error("close wal", "err", err)
		}
	}
}

var _ lifecycle.Service = (*Process)(nil)
