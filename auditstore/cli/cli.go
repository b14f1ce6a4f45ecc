// Package cli holds the `meshwarden audit` commands (collector, verify,
// query, tail, keygen); cmd/meshwarden mounts [NewCommand].
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/auditstore/collector"
	"github.com/meshwarden/meshwarden/auditstore/export"
	"github.com/meshwarden/meshwarden/auditstore/kafka"
	"github.com/meshwarden/meshwarden/auditstore/proof"
	"github.com/meshwarden/meshwarden/auditstore/query"
	"github.com/meshwarden/meshwarden/auditstore/verify"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/auditstore/witness"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/internal/logflags"
)

// NewCommand returns the `audit` command with its subcommands.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Run the audit collector; verify, tail and query audit trails",
		Long: `The audit collector stores the records the audit filter and the gateway send
in a hash-chained, fsynced write-ahead log with Ed25519-signed checkpoints,
and exports them to NATS JetStream and/or Kafka. Auditors verify a trail with
only the public key.

  meshwarden audit keygen --out audit.key --pub audit.pub
  meshwarden audit collector --dir /var/lib/meshwarden/audit --key audit.key --token-file token
  meshwarden audit verify --dir /var/lib/meshwarden/audit --pubkey audit.pub --witness nats://127.0.0.1:4222
  meshwarden audit prove --dir /var/lib/meshwarden/audit --seq 42 > proof.json
  meshwarden audit verify-proof --pubkey audit.pub proof.json
  meshwarden audit query --dir D --op-type FUND_TRANSFER --from 2026-11-25T00:00:00Z
  meshwarden audit tail --dir D -f`,
	}
	cmd.AddCommand(newAuditCollectorCmd(), newAuditVerifyCmd(), newAuditQueryCmd(), newAuditTailCmd(), newAuditKeygenCmd(),
		newAuditProveCmd(), newAuditVerifyProofCmd(), newAuditReportCmd())
	return cmd
}

type collectorFlags struct {
	listen, addrFile, dir, key       string
	tokenFile                        string
	tlsCert, tlsKey, clientCA        string
	allowSPIFFE                      []string
	segmentSize                      int64
	checkpointEvery                  uint64
	checkpointInterval               time.Duration
	retainSegments                   int
	retainAge                        time.Duration
	consulAddr                       string
	natsURL, natsStream, natsSubject string
	natsCkptSubject                  string
	natsCkptOnly                     bool
	kafka                            kafkaFlags
	maxBody                          int64
	logs                             logflags.Flags
}

type kafkaFlags struct {
	brokers                    []string
	topic, ckptTopic           string
	noCreate                   bool
	tls                        bool
	tlsCA, tlsCert, tlsKey     string
	saslMech, saslUser, saslPW string
}

func newAuditCollectorCmd() *cobra.Command {
	var f collectorFlags
	cmd := &cobra.Command{
		Use:   "collector",
		Short: "Receive audit batches, store them durably, export them",
		Long: `Run the audit collector: a separate process, so its failure domain and its
fsync load stay apart from the control plane and the gateway.

Senders POST an auditevent.Batch (JSON) to ` + auditevent.IngestPath + `. A sender is accepted
if it presents the shared token in the ` + auditevent.TokenHeader + ` header, or (with
--tls-cert/--tls-key/--client-ca) a client certificate whose SPIFFE id is
listed in --allow-spiffe. Others get 401 (no/bad credentials) or 403 (a valid
certificate whose SPIFFE id is not allowed).

Each event gets its sequence number and hash-chain link, is written to the
WAL in --dir, and the batch is answered 200 with an auditevent.Ack only after an
fsync (one fsync covers every batch waiting: group commit). An event whose id
was stored before is not stored again: the Ack lists it under "duplicates"
with its original seq. A sender with a certificate may only send records as
itself: source is set to its SPIFFE id, and a record claiming another source
is refused (403); a token sender cannot claim a SPIFFE id.

A signed checkpoint — Ed25519 over (seq, chain head, time), and the same
statement as a C2SP signed note over the RFC 6962 Merkle tree of all records
— is written every --checkpoint-every records, every --checkpoint-interval,
at each segment rotation and at shutdown; retention writes a signed
statement of where the trail now starts before it deletes a segment. With
--nats every record and every checkpoint is also published to JetStream (a
stream denying delete and purge), the witness 'audit verify --witness'
reads; --nats-checkpoints-only publishes just the checkpoints (a witness
without the per-record export cost; retention then does not wait for NATS).

Export to Kafka (--kafka-brokers; on its own or together with --nats): every
record, in seq order, to partition 0 of --kafka-topic (one partition keeps
the hash chain in order), with an idempotent producer and acks=all; key
"<seq>-<hash prefix>", headers Mw-Audit-Seq, Mw-Audit-Id and the W3C
traceparent/tracestate. Signed checkpoints go to --kafka-checkpoint-topic
once the records they cover are in Kafka. The cursor (kafka.cursor in --dir)
moves only after Kafka acknowledged; after an outage or a restart the
exporter resumes from it, so a record may arrive twice but never goes
missing: consumers skip a Mw-Audit-Seq they already have. Retention deletes
no segment that either exporter still needs. TLS: --kafka-tls (system roots)
or --kafka-tls-ca, and --kafka-tls-cert/--kafka-tls-key for brokers that
require client certificates. SASL: --kafka-sasl-mechanism (SCRAM-SHA-512,
SCRAM-SHA-256, or PLAIN with TLS only), --kafka-sasl-user, the password from
--kafka-sasl-password-file or MESHWARDEN_KAFKA_PASSWORD.

The shared token is for development without mTLS: with mTLS the control
plane gives proxies no token (the mw-audit cluster uses each proxy's own
certificate) — run the collector with --tls-cert/--tls-key, --client-ca and
--allow-spiffe.

The token comes from --token-file or the MESHWARDEN_AUDIT_TOKEN environment
variable (never from the command line, where ps would show it).

Also served: /metrics (Prometheus), /healthz. SIGINT/SIGTERM stop it
gracefully: in-flight batches are acknowledged, a final checkpoint written.

Measured throughput (2 shared cores, loopback HTTP, 8 senders x 50 events
per POST, Merkle tree + dedup + --nats-checkpoints-only witness on): about
142-188k events/s with p99 ack 4-8 ms while fsync averages <= 0.6 ms; p99
12-36 ms when a loaded disk slows fsync to 0.64-1.8 ms, and under 100k/s
beyond ~1.3 ms (the ack waits for fsync); 36-64k events/s exporting every
record to a JetStream server on the same cores; one event per POST tops out
near 10-13k/s, so send batches. Details: docs/BENCHMARKS.md.`,
		Example: `  meshwarden audit keygen --out audit.key --pub audit.pub
  echo s3cret > token
  meshwarden audit collector --dir ./audit-data --key audit.key --token-file token \
      --listen 127.0.0.1:7480 --nats nats://127.0.0.1:4222 --consul 127.0.0.1:8500

  # the same, exporting to Kafka over TLS with SCRAM instead of (or beside) --nats
  MESHWARDEN_KAFKA_PASSWORD=... meshwarden audit collector --dir ./audit-data --key audit.key \
      --token-file token --kafka-brokers kafka-1:9093,kafka-2:9093 --kafka-tls-ca kafka-ca.pem \
      --kafka-sasl-mechanism SCRAM-SHA-512 --kafka-sasl-user meshwarden-audit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCollector(cmd.Context(), f, cmd.ErrOrStderr()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:7480", "address to serve on (port 0 picks a free one)")
	fl.StringVar(&f.addrFile, "addr-file", "", "write the bound address to this file once serving (for scripts and tests)")
	fl.StringVar(&f.dir, "dir", "", "WAL directory (segments, checkpoints, export cursor) (required)")
	fl.StringVar(&f.key, "key", "", "Ed25519 private key `file` (PEM) that signs checkpoints; make one with 'meshwarden audit keygen' (required)")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the shared sender token (or set MESHWARDEN_AUDIT_TOKEN)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.StringVar(&f.clientCA, "client-ca", "", "CA bundle (PEM) that verifies sender client certificates (mTLS)")
	fl.StringSliceVar(&f.allowSPIFFE, "allow-spiffe", nil, "SPIFFE id allowed to send with a client certificate (repeatable), e.g. spiffe://dc1/ns/default/svc/gateway")
	fl.Int64Var(&f.segmentSize, "segment-size", 64<<20, "rotate segments at this many bytes")
	fl.Uint64Var(&f.checkpointEvery, "checkpoint-every", 1000, "sign a checkpoint every N records")
	fl.DurationVar(&f.checkpointInterval, "checkpoint-interval", time.Second, "sign a checkpoint at least this often while records arrive (verify fails on an unsigned tail older than its --max-unsigned-age, 5m by default)")
	fl.IntVar(&f.retainSegments, "retain-segments", 0, "keep at most N segment files (0: keep all); never deletes un-exported or un-checkpointed segments")
	fl.DurationVar(&f.retainAge, "retain-age", 0, "delete closed segments older than this (0: keep all); same safety rules")
	fl.StringVar(&f.consulAddr, "consul", "", "register in this Consul agent (host:port) as meshwarden-audit")
	fl.StringVar(&f.natsURL, "nats", "", "export to this NATS JetStream server (e.g. nats://127.0.0.1:4222)")
	fl.StringVar(&f.natsStream, "nats-stream", "MESHWARDEN_AUDIT", "JetStream stream to create/use")
	fl.StringVar(&f.natsSubject, "nats-subject", "meshwarden.audit.events", "subject records are published on")
	fl.BoolVar(&f.natsCkptOnly, "nats-checkpoints-only", false, "publish only the signed checkpoints to --nats (a witness), not every record")
	fl.StringVar(&f.natsCkptSubject, "nats-checkpoint-subject", "meshwarden.audit.checkpoints", "subject signed checkpoints are published on (a copy of the truncation evidence off this disk)")
	fl.StringSliceVar(&f.kafka.brokers, "kafka-brokers", nil, "export to Kafka: seed brokers as host:port, comma separated or repeated (e.g. 127.0.0.1:9092)")
	fl.StringVar(&f.kafka.topic, "kafka-topic", kafka.DefaultTopic, "Kafka topic records are produced to (partition 0, in seq order)")
	fl.StringVar(&f.kafka.ckptTopic, "kafka-checkpoint-topic", kafka.DefaultCheckpointTopic, "Kafka topic signed checkpoints are produced to (created with retention.ms=-1)")
	fl.BoolVar(&f.kafka.noCreate, "kafka-no-create-topics", false, "do not create missing Kafka topics (then they must exist; one partition is enough)")
	fl.BoolVar(&f.kafka.tls, "kafka-tls", false, "connect to Kafka over TLS, verifying brokers with the system roots (implied by --kafka-tls-ca)")
	fl.StringVar(&f.kafka.tlsCA, "kafka-tls-ca", "", "CA bundle `file` (PEM) that verifies the Kafka brokers; turns TLS on")
	fl.StringVar(&f.kafka.tlsCert, "kafka-tls-cert", "", "client certificate `file` (PEM) for brokers that require one (with --kafka-tls-key)")
	fl.StringVar(&f.kafka.tlsKey, "kafka-tls-key", "", "private key `file` (PEM) of --kafka-tls-cert")
	fl.StringVar(&f.kafka.saslMech, "kafka-sasl-mechanism", "", "SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256, or PLAIN (TLS only)")
	fl.StringVar(&f.kafka.saslUser, "kafka-sasl-user", "", "SASL user name")
	fl.StringVar(&f.kafka.saslPW, "kafka-sasl-password-file", "", "`file` holding the SASL password (or set MESHWARDEN_KAFKA_PASSWORD; never on the command line)")
	fl.Int64Var(&f.maxBody, "max-batch-bytes", 8<<20, "largest accepted batch body")
	f.logs.RegisterLogging(fl)
	return cmd
}

// kafkaConfig turns the --kafka-* flags into an exporter configuration, or
// nil when --kafka-brokers is not set. Flags that only make sense with a
// broker are refused without one, so a typo cannot silently turn export off.
func kafkaConfig(f collectorFlags) (*kafka.Config, error) {
	k := f.kafka
	if len(k.brokers) == 0 {
		var set []string
		for name, on := range map[string]bool{
			"--kafka-topic": k.topic != kafka.DefaultTopic, "--kafka-checkpoint-topic": k.ckptTopic != kafka.DefaultCheckpointTopic,
			"--kafka-no-create-topics": k.noCreate, "--kafka-tls": k.tls, "--kafka-tls-ca": k.tlsCA != "", "--kafka-tls-cert": k.tlsCert != "",
			"--kafka-tls-key": k.tlsKey != "", "--kafka-sasl-mechanism": k.saslMech != "", "--kafka-sasl-user": k.saslUser != "",
			"--kafka-sasl-password-file": k.saslPW != "",
		} {
			if on {
				set = append(set, name)
			}
		}
		if len(set) > 0 {
			sort.Strings(set)
			return nil, fmt.Errorf("%s given without --kafka-brokers: add --kafka-brokers host:port to export to Kafka", strings.Join(set, ", "))
		}
		return nil, nil
	}
	cfg := &kafka.Config{Dir: f.dir, Brokers: k.brokers, Topic: k.topic, CheckpointTopic: k.ckptTopic, CreateTopics: !k.noCreate}
	if k.tls || k.tlsCA != "" || k.tlsCert != "" || k.tlsKey != "" {
		tc, err := kafka.ClientTLS(k.tlsCA, k.tlsCert, k.tlsKey)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	if k.saslMech == "" && (k.saslUser != "" || k.saslPW != "") {
		return nil, fmt.Errorf("--kafka-sasl-user/--kafka-sasl-password-file need --kafka-sasl-mechanism (%s)", strings.Join(kafka.SASLMechanisms, ", "))
	}
	if k.saslMech != "" {
		pw := strings.TrimSpace(os.Getenv("MESHWARDEN_KAFKA_PASSWORD"))
		if k.saslPW != "" {
			b, err := os.ReadFile(k.saslPW)
			if err != nil {
				return nil, fmt.Errorf("read --kafka-sasl-password-file: %w", err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		m, err := kafka.SASL(k.saslMech, k.saslUser, pw, cfg.TLS != nil)
		if err != nil {
			return nil, err
		}
		cfg.SASL = m
	}
	return cfg, nil
}

func runCollector(ctx context.Context, f collectorFlags, stderr io.Writer) error {
	logger, err := f.logs.Logger(stderr)
	if err != nil {
		return exitcode.Usagef("%w", err)
	}
	logger = logger.With("component", "audit-collector")
	if f.dir == "" || f.key == "" {
		return exitcode.Usagef("--dir and --key are required (make a key with `meshwarden audit keygen`)")
	}
	if f.natsCkptOnly && f.natsURL == "" {
		return exitcode.Usagef("--nats-checkpoints-only needs --nats (the JetStream server that witnesses the checkpoints)")
	}
	kcfg, err := kafkaConfig(f)
	if err != nil {
		return err
	}
	var tokens []string
	if t := strings.TrimSpace(os.Getenv("MESHWARDEN_AUDIT_TOKEN")); t != "" {
		tokens = append(tokens, t)
	}
	var ncfg *export.Config
	if f.natsURL != "" {
		ncfg = &export.Config{URL: f.natsURL, Stream: f.natsStream, Subject: f.natsSubject, CheckpointSubject: f.natsCkptSubject, CheckpointsOnly: f.natsCkptOnly}
	}
	return collector.Run(ctx, collector.RunConfig{
		Dir: f.dir, KeyFile: f.key, Listen: f.listen, AddrFile: f.addrFile,
		Tokens: tokens, TokenFile: f.tokenFile,
		TLSCert: f.tlsCert, TLSKey: f.tlsKey, ClientCA: f.clientCA, AllowSPIFFE: f.allowSPIFFE,
		SegmentSize: f.segmentSize, CheckpointEvery: f.checkpointEvery, CheckpointInterval: f.checkpointInterval,
		RetainSegments: f.retainSegments, RetainAge: f.retainAge, MaxBodyBytes: f.maxBody,
		ConsulAddress: f.consulAddr, NATS: ncfg, Kafka: kcfg, Log: logger,
	})
}

type verifyFlags struct {
	dir, pub               string
	extra                  []string
	quiet                  bool
	allowUnsigned          bool
	maxUnsignedAge         time.Duration
	witness, witnessStream string
	witnessSubject         string
	skipWitness            bool
	witnessTimeout         time.Duration
}

func newAuditVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove an audit trail was not altered, dropped, reordered or truncated",
		Long: `Verify reads every segment in --dir and checks each record's CRC, sequence
number and hash-chain link, the Ed25519 signature of every checkpoint and its
C2SP signed note (with only the public key), that every checkpoint matches
the chain, that its Merkle root matches the records, and that the trail
reaches the last signed checkpoint. It names the first bad record (segment,
offset, seq, id) and exits 1, or prints OK with the guarantees that held and
those only a witness can give, and exits 0.

It fails closed: these are failures, not notes —
  - records that no signed checkpoint covers at all (a forger can re-chain a
    whole trail and delete checkpoints.jsonl; only the signature tells);
  - a trail that does not start at seq 1, unless a signed retention statement
    says it starts where it does;
  - records after the last signed checkpoint whose first is older than
    --max-unsigned-age (the collector signs every second by default).
--allow-unsigned-tail accepts the first and the last, as warnings.

Deleting the newest segments together with their checkpoints cannot be seen
from the directory alone. --witness checks the trail against the signed
checkpoints the collector published to NATS JetStream (a stream that denies
delete and purge): an unreachable witness is a failure unless
--skip-unreachable-witness, and a witness that disagrees fails naming both
heads. Checkpoints kept elsewhere as files can be added with --checkpoints.

It is safe to run against a live collector's directory.`,
		Example: `  meshwarden audit verify --dir ./audit-data --pubkey audit.pub
  meshwarden audit verify --dir ./audit-data --pubkey audit.pub --witness nats://127.0.0.1:4222`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runVerify(cmd.Context(), f, cmd.OutOrStdout()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "WAL directory to verify (required)")
	fl.StringVar(&f.pub, "pubkey", "", "Ed25519 public key `file` (PEM) from 'meshwarden audit keygen' (required)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing when the trail verifies")
	fl.StringSliceVar(&f.extra, "checkpoints", nil, "also check against signed checkpoints in this `file` (JSON lines, e.g. the meshwarden.audit.checkpoints messages from JetStream); repeatable")
	fl.BoolVar(&f.allowUnsigned, "allow-unsigned-tail", false, "accept records no signed checkpoint covers (none at all, or a tail older than --max-unsigned-age) as a warning instead of a failure")
	fl.DurationVar(&f.maxUnsignedAge, "max-unsigned-age", 5*time.Minute, "fail when the first record after the last signed checkpoint is older than this")
	fl.StringVar(&f.witness, "witness", "", "check against the checkpoints published to this NATS JetStream server (e.g. nats://127.0.0.1:4222)")
	fl.StringVar(&f.witnessStream, "witness-stream", "MESHWARDEN_AUDIT", "JetStream stream of the witness")
	fl.StringVar(&f.witnessSubject, "witness-subject", "meshwarden.audit.checkpoints", "subject of the witnessed checkpoints")
	fl.BoolVar(&f.skipWitness, "skip-unreachable-witness", false, "if --witness cannot be reached, say so and go on instead of failing")
	fl.DurationVar(&f.witnessTimeout, "witness-timeout", 10*time.Second, "how long to try reading the witness")
	return cmd
}

func runVerify(ctx context.Context, f verifyFlags, out io.Writer) error {
	if f.dir == "" || f.pub == "" {
		return exitcode.Usagef("--dir and --pubkey are required")
	}
	k, err := wal.LoadPublicKey(f.pub)
	if err != nil {
		return err
	}
	opt := verify.Options{AllowUnsignedTail: f.allowUnsigned, MaxUnsignedAge: f.maxUnsignedAge}
	for _, p := range f.extra {
		cps, err := wal.ReadCheckpointFile(p)
		if err != nil {
			return fmt.Errorf("--checkpoints: %w", err)
		}
		opt.Extra = append(opt.Extra, cps...)
	}
	if f.witness != "" {
		opt.WitnessName = f.witness
		wctx, cancel := context.WithTimeout(ctx, f.witnessTimeout)
		cps, err := witness.Fetch(wctx, witness.Config{URL: f.witness, Stream: f.witnessStream, Subject: f.witnessSubject})
		cancel()
		switch {
		case err != nil && errors.Is(err, witness.ErrUnreachable) && f.skipWitness:
			opt.WitnessSkipped = err.Error()
			fmt.Fprintf(out, "warning: %v; going on without it (--skip-unreachable-witness)\n", err)
		case err != nil:
			fmt.Fprintf(out, "FAIL  witness\n  reason: %v\n", err)
			return exitcode.Finding(fmt.Errorf("audit trail in %s not verified: %w (pass --skip-unreachable-witness to verify without it)", f.dir, err))
		default:
			opt.Witness, opt.WitnessChecked = cps, true
		}
	}
	rep, err := verify.Verify(ctx, f.dir, k, opt)
	if err != nil {
		return err
	}
	if !f.quiet || !rep.OK() {
		rep.Format(out)
	}
	if !rep.OK() {
		return exitcode.Finding(fmt.Errorf("audit trail in %s failed verification: %s", f.dir, rep.Problem.Kind))
	}
	return nil
}

// filterFlags select records: the WAL directory and the filters shared by
// query, tail and report.
type filterFlags struct {
	dir, from, to string
	f             query.Filter
}

func (ff *filterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&ff.dir, "dir", "", "WAL directory (required)")
	fl.StringVar(&ff.from, "from", "", "only records at or after this time: RFC 3339 (2026-12-03T09:00:00Z), a date (2026-12-03, UTC midnight), a duration ago (90m), or Unix nanoseconds")
	fl.StringVar(&ff.to, "to", "", "only records before this time (same forms as --from)")
	fl.StringVar(&ff.f.OpType, "op-type", "", "only this op_type, any case (FUND_TRANSFER, fund_transfer)")
	fl.StringVar(&ff.f.Subject, "subject", "", "only this subject (SPIFFE id or JWT subject)")
	fl.StringVar(&ff.f.TraceID, "trace-id", "", "only this W3C trace id")
	fl.StringVar(&ff.f.Tag, "tag", "", "only records carrying this compliance tag (pci, gdpr, region=eu)")
}

// filter checks that --dir is given and returns the filter the flags describe.
func (ff *filterFlags) filter() (query.Filter, error) {
	if ff.dir == "" {
		return query.Filter{}, exitcode.Usagef("--dir is required")
	}
	f := ff.f
	if err := buildFilter(ff.from, ff.to, &f); err != nil {
		return query.Filter{}, err
	}
	return f, nil
}

// parseTime reads a --from/--to value: RFC 3339, a date (UTC), a duration
// before now, or Unix nanoseconds.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(0, n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: use RFC 3339 (2026-11-25T09:00:00Z), a date (2026-11-25), a duration ago (90m, 24h) or Unix nanoseconds", s)
}

func buildFilter(from, to string, f *query.Filter) error {
	var err error
	now := time.Now()
	if f.From, err = parseTime(from, now); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if f.To, err = parseTime(to, now); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return fmt.Errorf("--from %s is not before --to %s: no record can match", f.From.UTC().Format(time.RFC3339), f.To.UTC().Format(time.RFC3339))
	}
	return nil
}

// recordPrinter returns the printer for --output: json (the stored record,
// one object per line) or text (one readable line per record).
func recordPrinter(w io.Writer, output string) (func(*auditevent.Event, []byte) error, error) {
	switch output {
	case "json":
		return printRecord(w), nil
	case "text":
		return func(e *auditevent.Event, _ []byte) error {
			_, err := fmt.Fprintln(w, formatRecord(e))
			return err
		}, nil
	default:
		return nil, fmt.Errorf("--output %q: use text or json", output)
	}
}

// formatRecord is one readable line: time (UTC, ms), seq, level, op type,
// phase, subject, method and path, resource, status and latency, lane, id
// (which starts with the trace id).
func formatRecord(e *auditevent.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s seq=%d %-8s %s %s subject=%s %s %s", time.Unix(0, e.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z"),
		e.Seq, e.Level, e.OpType, e.Phase, orDash(e.Subject), e.Method, e.Path)
	if e.Resource != "" {
		fmt.Fprintf(&b, " resource=%s", e.Resource)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " status=%d latency=%s", e.Status, time.Duration(e.LatencyNS).Round(time.Microsecond))
	}
	if e.Dye != "" {
		fmt.Fprintf(&b, " lane=%s", e.Dye)
	}
	if len(e.Tags) > 0 {
		fmt.Fprintf(&b, " tags=%s", strings.Join(e.Tags, ","))
	}
	if len(e.Fields) > 0 {
		fmt.Fprintf(&b, " masked=%d", len(e.Fields))
	}
	if len(e.PII) > 0 {
		fmt.Fprintf(&b, " pii=%s(%s)", strings.Join(e.PII, ","), e.PIIAction)
	}
	if e.Blocked != "" {
		fmt.Fprintf(&b, " blocked=%s", e.Blocked)
	}
	fmt.Fprintf(&b, " id=%s", e.ID)
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printRecord(w io.Writer) func(*auditevent.Event, []byte) error {
	return func(_ *auditevent.Event, raw []byte) error {
		if _, err := w.Write(raw); err != nil {
			return err
		}
		_, err := w.Write([]byte{'\n'})
		return err
	}
}

func newAuditQueryCmd() *cobra.Command {
	var ff filterFlags
	var count bool
	var output string
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Print stored records matching filters, one JSON object per line",
		Example: `  meshwarden audit query --dir ./audit-data --op-type FUND_TRANSFER --from 2026-11-25T08:00:00Z --to 2026-11-25T09:00:00Z
  meshwarden audit query --dir ./audit-data --trace-id 4bf92f3577b34da6a3ce929d0e0e4736
  meshwarden audit query --dir ./audit-data --tag pci --from 24h -o text`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fn, err := recordPrinter(out, output)
			if err != nil {
				return err
			}
			if count {
				fn = func(*auditevent.Event, []byte) error { return nil }
			}
			n, err := query.Scan(cmd.Context(), ff.dir, f, fn)
			if count {
				fmt.Fprintln(out, n)
			}
			return err
		},
	}
	ff.register(cmd)
	cmd.Flags().BoolVar(&count, "count", false, "print only the number of matching records")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "json (the stored records, one per line) or text (one readable line each)")
	return cmd
}

func newAuditTailCmd() *cobra.Command {
	var ff filterFlags
	var n int
	var follow bool
	var output string
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the last records, and with -f follow new ones as they are stored",
		Example: `  meshwarden audit tail --dir ./audit-data -n 20 -f --op-type fund_transfer
  meshwarden audit tail --dir ./audit-data --from 1h -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter()
			if err != nil {
				return err
			}
			fn, err := recordPrinter(cmd.OutOrStdout(), output)
			if err != nil {
				return err
			}
			return query.Tail(cmd.Context(), ff.dir, f, n, follow, 200*time.Millisecond, fn)
		},
	}
	ff.register(cmd)
	cmd.Flags().IntVarP(&n, "lines", "n", 10, "how many of the last matching records to print first")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing records as they arrive, until interrupted")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (one readable line per record) or json (the stored records)")
	return cmd
}

func newAuditKeygenCmd() *cobra.Command {
	var out, pub string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create the Ed25519 key pair that signs audit checkpoints",
		Long: `Keygen writes a new Ed25519 private key (PKCS#8 PEM, mode 0600) for the
collector's --key and its public key (PKIX PEM) for auditors' verify --pubkey.
It refuses to overwrite existing files.`,
		Example: `  meshwarden audit keygen --out audit.key --pub audit.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pub == "" {
				pub = out + ".pub"
			}
			if err := wal.GenerateKey(out, pub); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (private: the collector's --key; keep it secret)\nwrote %s (public: give it to auditors for audit verify --pubkey)\n", out, pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "audit.key", "private key file to create")
	cmd.Flags().StringVar(&pub, "pub", "", "public key file to create (default: <out>.pub)")
	return cmd
}

func newAuditProveCmd() *cobra.Command {
	var dir string
	var seq, at, from, to uint64
	cmd := &cobra.Command{
		Use:   "prove",
		Short: "Print an inclusion proof for one record, or a consistency proof between two checkpoints",
		Long: `Prove prints, as JSON, what an auditor needs to check one record without the
rest of the log: the record's stored bytes, an RFC 6962 inclusion proof (the
hashes from its leaf to the root) and the signed checkpoint (a C2SP signed
note: origin, tree size, base64 root) it is proved against. The leaf is
tlog.RecordHash(record) at index seq-1 (golang.org/x/mod/sumdb/tlog).

With --from and --to (two checkpoint seqs) it prints a consistency proof
instead: that the later signed tree extends the earlier one, i.e. nothing
before --from was changed between the two checkpoints.

Check either with 'meshwarden audit verify-proof', which needs only the
public key. Proofs need every record from seq 1 (not after retention).`,
		Example: `  meshwarden audit prove --dir ./audit-data --seq 42 > proof.json
  meshwarden audit prove --dir ./audit-data --seq 42 --checkpoint 1000
  meshwarden audit prove --dir ./audit-data --from 1000 --to 2000 > consistency.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return exitcode.Usagef("--dir is required")
			}
			var v any
			var err error
			switch {
			case seq > 0 && (from > 0 || to > 0):
				return exitcode.Usagef("give either --seq (inclusion) or --from and --to (consistency), not both")
			case seq > 0:
				v, err = proof.ProveRecord(cmd.Context(), dir, seq, at)
			case from > 0 && to > 0:
				v, err = proof.ProveConsistency(cmd.Context(), dir, from, to)
			default:
				return exitcode.Usagef("give --seq N for an inclusion proof, or --from A --to B for a consistency proof")
			}
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "WAL directory (required)")
	fl.Uint64Var(&seq, "seq", 0, "record to prove")
	fl.Uint64Var(&at, "checkpoint", 0, "prove against the checkpoint at this seq (default: the latest)")
	fl.Uint64Var(&from, "from", 0, "consistency proof: seq of the earlier checkpoint")
	fl.Uint64Var(&to, "to", 0, "consistency proof: seq of the later checkpoint")
	return cmd
}

func newAuditVerifyProofCmd() *cobra.Command {
	var pub string
	cmd := &cobra.Command{
		Use:   "verify-proof FILE",
		Short: "Check a proof from 'audit prove' with only the public key",
		Long: `Verify-proof checks a proof printed by 'meshwarden audit prove' (FILE, or - for
stdin): the checkpoint's signature with --pubkey, then either that the record
hashes into the signed tree at its seq (inclusion), or that the later signed
tree extends the earlier one (consistency). It exits 1 on any mismatch.`,
		Example: `  meshwarden audit verify-proof --pubkey audit.pub proof.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pub == "" {
				return exitcode.Usagef("--pubkey is required")
			}
			k, err := wal.LoadPublicKey(pub)
			if err != nil {
				return err
			}
			var data []byte
			if args[0] == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("read proof: %w", err)
			}
			var probe map[string]json.RawMessage
			if err := json.Unmarshal(data, &probe); err != nil {
				return fmt.Errorf("proof is not JSON from 'meshwarden audit prove': %w", err)
			}
			out := cmd.OutOrStdout()
			if _, ok := probe["old_checkpoint"]; ok {
				var p proof.Consistency
				if err := json.Unmarshal(data, &p); err != nil {
					return fmt.Errorf("consistency proof: %w", err)
				}
				old, cur, err := proof.CheckConsistency(k, &p)
				if err != nil {
					fmt.Fprintf(out, "FAIL  %v\n", err)
					return exitcode.Finding(fmt.Errorf("consistency proof does not hold: %w", err))
				}
				fmt.Fprintf(out, "OK    the signed tree of %d records extends the signed tree of %d records\n", cur.Size, old.Size)
				fmt.Fprintf(out, "      roots %s -> %s\n", old.Root, cur.Root)
				return nil
			}
			var p proof.Inclusion
			if err := json.Unmarshal(data, &p); err != nil {
				return fmt.Errorf("inclusion proof: %w", err)
			}
			tr, err := proof.CheckInclusion(k, &p)
			if err != nil {
				fmt.Fprintf(out, "FAIL  %v\n", err)
				return exitcode.Finding(fmt.Errorf("inclusion proof does not hold: %w", err))
			}
			fmt.Fprintf(out, "OK    record %d is in the signed tree of %d records (root %s)\n", p.Seq, tr.Size, tr.Root)
			fmt.Fprintf(out, "      record: %s\n", p.Record)
			return nil
		},
	}
	cmd.Flags().StringVar(&pub, "pubkey", "", "Ed25519 public key `file` (PEM) from 'meshwarden audit keygen' (required)")
	return cmd
}
