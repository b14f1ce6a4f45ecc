// Package kafka ships the audit WAL to Apache Kafka, beside (or instead of)
// the JetStream exporter in auditstore/export, with the same contract: every
// record in sequence order, at least once, resumed from a persisted cursor
// after an outage or a restart, and a copy of every signed checkpoint off the
// collector's disk.
//
// # Partitioning: the whole chain, in seq order, to partition 0
//
// Every record goes to partition 0 of the topic (a manual partitioner), so
// the Kafka log holds the records in exactly the WAL's sequence order. The
// audit log is one hash chain: record n's prev_hash is record n-1's hash,
// and an outside consumer can re-check the chain (and so detect a dropped or
// reordered record) only if it reads records in seq order. Kafka orders
// records only within a partition; keying by subject would keep each
// subject's records in order but scatter the chain over partitions, and a
// verifier would have to merge and re-sort them by seq with no way to know
// it has waited long enough for a gap to fill. The price is that one
// partition carries the whole stream: one partition of a Kafka broker takes
// tens of MB/s, more than the collector's ingest (≈100k records/s of a few
// hundred bytes). A topic created with more partitions works, but only
// partition 0 is written.
//
// # Keys, headers, delivery
//
// The record key is the dedupe id `<seq>-<first 16 hex of hash>` (the same
// string the JetStream exporter sends as Nats-Msg-Id, [export.MsgID]), so a
// compacted topic also collapses re-sends. Headers: Mw-Audit-Seq (decimal
// seq), Mw-Audit-Id (the event id), and the W3C trace context: traceparent
// (and tracestate) copied from the captured request headers when the audit
// filter captured them, otherwise traceparent
// `00-<trace_id>-<first 16 hex of the record hash>-00` built from the
// event's trace_id (16-hex B3 ids are left-padded to 32), so consumers join
// the request's trace; the parent id then names the audit record, not a
// span that was recorded. The value is the stored payload (canonical JSON
// with seq, prev_hash and hash).
//
// The producer is franz-go's default: idempotent (producer id + sequence
// numbers, so the broker drops the copies of a retried produce request) with
// acks=all. Idempotence covers one producer session only: after a restart,
// or after the exporter gives up on a stalled session and starts a new
// client, records after the cursor are produced again. Consumers therefore
// de-duplicate by Mw-Audit-Seq (or the key): keep the highest seq seen,
// skip anything at or below it. The cursor (kafka.cursor in the WAL
// directory) moves, fsynced, only to the end of a prefix Kafka acknowledged,
// so nothing acknowledged by the collector is ever skipped.
//
// # Testing
//
// No Kafka broker can be installed on the machines this is built on; the
// tests run against franz-go's kfake, an in-process cluster that speaks the
// real Kafka protocol (produce, fetch, idempotent producer ids, topic
// creation, persistence across restarts, SASL, TLS).
package kafka

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/meshwarden/meshwarden/auditstore/export"
	"github.com/meshwarden/meshwarden/auditstore/internal/ckptlog"
	"github.com/meshwarden/meshwarden/auditstore/internal/cursorfile"
	"github.com/meshwarden/meshwarden/auditstore/wal"
)

// CursorFile is the Kafka exporter's cursor in the WAL directory: the last
// sequence Kafka acknowledged.
const CursorFile = "kafka.cursor"

// CheckpointCursorFile counts the checkpoint-log lines already exported to
// the checkpoint topic.
const CheckpointCursorFile = "kafka.checkpoints.cursor"

// Header names carried by every exported record.
const (
	HeaderSeq         = "Mw-Audit-Seq"
	HeaderID          = "Mw-Audit-Id"
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Defaults of [Config].
const (
	DefaultTopic           = "meshwarden.audit.events"
	DefaultCheckpointTopic = "meshwarden.audit.checkpoints"
)

// Config configures an Exporter.
type Config struct {
	// Dir is the WAL directory. Required.
	Dir string
	// Brokers are the seed brokers (host:port). Required.
	Brokers []string
	// Topic receives the records, all on partition 0. Default
	// meshwarden.audit.events.
	Topic string
	// CheckpointTopic receives each signed checkpoint (the JSON line of
	// checkpoints.jsonl) once the records it covers are exported. Default
	// meshwarden.audit.checkpoints. It must differ from Topic.
	CheckpointTopic string
	// CreateTopics creates missing topics (one partition, the broker's
	// default replication factor; the checkpoint topic with retention.ms=-1)
	// at the start of every session. Off, the topics must exist.
	CreateTopics bool
	// Batch is how many records are in flight before the cursor is saved.
	// Up to two batches are in flight. Default 512.
	Batch int
	// AckTimeout: a session in which Kafka acknowledges nothing for this
	// long, with records in flight, is abandoned and a new one started from
	// the cursor. Default 10s.
	AckTimeout time.Duration
	// MaxBackoff bounds the wait between sessions after an outage (it
	// doubles from 100ms). Default 5s.
	MaxBackoff time.Duration
	// TLS, if set, connects to the brokers over TLS.
	TLS *tls.Config
	// SASL, if set, authenticates with this mechanism.
	SASL sasl.Mechanism
	// Durable bounds what is read to records known to be fsynced (the
	// collector passes WAL.Durable). Nil: everything complete on disk.
	Durable func() uint64
	// Changed wakes the exporter when records arrive (WAL.Changed). Nil: poll.
	Changed func() <-chan struct{}
	// Logf receives outage and progress notes. Default: discard.
	Logf func(format string, args ...any)
	// ClientOpts are extra franz-go options (tests, tuning).
	ClientOpts []kgo.Opt
}

// Exporter produces WAL records to Kafka.
type Exporter struct {
	cfg Config
	cur *cursorfile.Cursors // records and checkpoint lines exported
	// ckptLog follows the checkpoint log; pending holds the checkpoints
	// read from it but not yet produced, oldest first (Run's goroutine
	// only; both reset at the start of each session).
	ckptLog  *ckptlog.Log
	pending  []wal.Checkpoint
	acked    atomic.Uint64
	failures atomic.Uint64
	ckpts    atomic.Uint64
}

// New validates cfg, loads the cursor and returns an exporter; call Run.
func New(cfg Config) (*Exporter, error) {
	if cfg.Dir == "" {
		return nil, errors.New("kafka export: Dir is required (the WAL directory, --dir)")
	}
	var brokers []string
	for _, b := range cfg.Brokers {
		if b = strings.TrimSpace(b); b == "" {
			continue
		}
		if strings.Contains(b, "://") {
			return nil, fmt.Errorf("kafka export: broker %q: give host:port, without a scheme (TLS is set with --kafka-tls-ca)", b)
		}
		if _, port, ok := strings.Cut(b, ":"); !ok || port == "" {
			return nil, fmt.Errorf("kafka export: broker %q: give host:port, e.g. 127.0.0.1:9092", b)
		}
		brokers = append(brokers, b)
	}
	if len(brokers) == 0 {
		return nil, errors.New("kafka export: no brokers: give at least one host:port (--kafka-brokers)")
	}
	cfg.Brokers = brokers
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.CheckpointTopic == "" {
		cfg.CheckpointTopic = DefaultCheckpointTopic
	}
	for _, t := range []string{cfg.Topic, cfg.CheckpointTopic} {
		if err := validTopic(t); err != nil {
			return nil, err
		}
	}
	if cfg.Topic == cfg.CheckpointTopic {
		return nil, fmt.Errorf("kafka export: the record topic and the checkpoint topic are both %q: give them different names", cfg.Topic)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 512
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	cur, err := cursorfile.Open(cfg.Dir, CursorFile, CheckpointCursorFile, cursorName, cursorFix)
	if err != nil {
		return nil, err
	}
	return &Exporter{cfg: cfg, cur: cur}, nil
}

// validTopic applies Kafka's topic name rules, so a typo fails at start and
// not as a broker error later.
func validTopic(t string) error {
	if len(t) > 249 || t == "." || t == ".." {
		return fmt.Errorf("kafka export: topic %q is not a valid Kafka topic name (at most 249 characters, not . or ..)", t)
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("kafka export: topic %q: Kafka topic names use only letters, digits, '.', '_' and '-' (found %q)", t, c)
		}
	}
	return nil
}

// Exported is the last sequence Kafka acknowledged and the exporter
// persisted (the cursor). WAL retention keeps every segment after it.
func (x *Exporter) Exported() uint64 { return x.cur.Records() }

// Acked counts record acknowledgements (re-sends included).
func (x *Exporter) Acked() uint64 { return x.acked.Load() }

// Failures counts abandoned sessions (broker unreachable, produce errors,
// stalls).
func (x *Exporter) Failures() uint64 { return x.failures.Load() }

// CheckpointsExported counts checkpoint lines acknowledged by Kafka.
func (x *Exporter) CheckpointsExported() uint64 { return x.ckpts.Load() }

// Follow binds the exporter to a live WAL in the same process: only records
// up to durable() are read, and changed() wakes the exporter. Call before Run.
func (x *Exporter) Follow(durable func() uint64, changed func() <-chan struct{}) {
	x.cfg.Durable, x.cfg.Changed = durable, changed
}

// ReadCursor returns the persisted Kafka cursor of dir (0 if none).
func ReadCursor(dir string) (uint64, error) {
	return cursorfile.Read(filepath.Join(dir, CursorFile), cursorName, cursorFix)
}

// cursorName and cursorFix name the cursors in errors.
const (
	cursorName = "kafka export cursor"
	cursorFix  = "delete it to re-export everything (consumers de-duplicate by Mw-Audit-Seq)"
)

// Run exports until ctx ends. Outages are retried with a backoff that
// doubles from 100ms up to MaxBackoff, logging each; Run returns only ctx's
// error or a WAL corruption.
func (x *Exporter) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	down := 0 // consecutive failed sessions
	for {
		progressed, err := x.session(ctx, down)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, wal.ErrCorrupt) {
			return fmt.Errorf("kafka export stopped: %w", err)
		}
		if progressed {
			backoff, down = 100*time.Millisecond, 0
		}
		x.failures.Add(1)
		down++
		x.cfg.Logf("kafka export: %v (cursor at seq %d; retry %d in %s)", err, x.Exported(), down, backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, x.cfg.MaxBackoff)
	}
}

func (x *Exporter) client() (*kgo.Client, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(x.cfg.Brokers...),
		kgo.ClientID("meshwarden-audit-exporter"),
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default, stated: idempotence needs it
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(x.cfg.AckTimeout),
		kgo.DialTimeout(2 * time.Second),
		kgo.RetryTimeout(x.cfg.AckTimeout),
		kgo.MaxBufferedRecords(4 * x.cfg.Batch),
		kgo.ProducerLinger(time.Millisecond),
	}
	if x.cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(x.cfg.TLS))
	}
	if x.cfg.SASL != nil {
		opts = append(opts, kgo.SASL(x.cfg.SASL))
	}
	opts = append(opts, x.cfg.ClientOpts...)
	return kgo.NewClient(opts...)
}

// ensureTopics creates the topics if missing. An existing topic is fine; a
// refusal to create (no permission) is logged once per session and the
// produce that follows tells whether the topic is there.
func (x *Exporter) ensureTopics(ctx context.Context, cl *kgo.Client) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	for _, t := range []string{x.cfg.Topic, x.cfg.CheckpointTopic} {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = t, 1, -1
		if t == x.cfg.CheckpointTopic {
			// The checkpoint topic is the copy of the truncation evidence:
			// keep it forever.
			for k, v := range map[string]string{"retention.ms": "-1", "retention.bytes": "-1"} {
				c := kmsg.NewCreateTopicsRequestTopicConfig()
				c.Name, c.Value = k, kmsg.StringPtr(v)
				rt.Configs = append(rt.Configs, c)
			}
		}
		req.Topics = append(req.Topics, rt)
	}
	cctx, cancel := context.WithTimeout(ctx, x.cfg.AckTimeout)
	defer cancel()
	resp, err := req.RequestWith(cctx, cl)
	if err != nil {
		return fmt.Errorf("reach kafka %s: %w", strings.Join(x.cfg.Brokers, ","), err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			msg := ""
			if t.ErrorMessage != nil {
				msg = ": " + *t.ErrorMessage
			}
			x.cfg.Logf("kafka export: could not create topic %s: %v%s (producing anyway; create it with one partition if it is missing)", t.Topic, err, msg)
		}
	}
	return nil
}

type ack struct {
	seq uint64
	err error
}

// session runs one client until an error. progressed reports whether Kafka
// acknowledged anything in it (which resets the backoff).
func (x *Exporter) session(ctx context.Context, down int) (progressed bool, err error) {
	// Read the checkpoint log from its start once per session: what was
	// read but not produced before an outage is read again.
	x.ckptLog, x.pending = ckptlog.New(filepath.Join(x.cfg.Dir, wal.CheckpointFile)), nil
	cl, err := x.client()
	if err != nil {
		return false, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if x.cfg.CreateTopics {
		if err := x.ensureTopics(ctx, cl); err != nil {
			return false, err
		}
	}
	f, err := wal.NewFollower(x.cfg.Dir, x.Exported()+1)
	if err != nil {
		return false, err
	}
	defer f.Close()
	f.SetLight(true)

	window := 2 * x.cfg.Batch
	acks := make(chan ack, window) // never blocks a promise: at most window in flight
	inflight := 0
	var next uint64 = x.Exported() + 1 // seq of the next expected ack
	last := x.Exported()               // last acknowledged in this session, not yet saved
	lastAck := time.Now()
	lastCkpt := time.Now()
	lastLog := time.Now()
	resumed := down == 0
	save := func() error {
		if last == x.Exported() {
			return nil
		}
		if err := x.cur.SetRecords(last); err != nil {
			return err
		}
		if !resumed {
			resumed = true
			x.cfg.Logf("kafka export: kafka acknowledges again after %d failed attempt(s); cursor at seq %d", down, last)
		}
		return nil
	}
	// checkpoint saves the cursor, then exports the checkpoints written so far.
	checkpoint := func() error {
		if err := save(); err != nil {
			return err
		}
		if err := x.exportCheckpoints(ctx, cl); err != nil {
			return err
		}
		lastCkpt = time.Now()
		return nil
	}
	defer func() {
		if serr := save(); serr != nil && err == nil {
			err = serr
		}
	}()
	for {
		limit, wake := wal.FollowBounds(x.cfg.Durable, x.cfg.Changed)
		for inflight < window {
			rec, e, err := f.Next(limit)
			if wal.IsWait(err) {
				break
			}
			if err != nil {
				return progressed, err
			}
			r := &kgo.Record{
				Topic:   x.cfg.Topic,
				Key:     []byte(export.MsgID(e.Seq, e.Hash)),
				Value:   append([]byte(nil), rec.Payload...),
				Headers: RecordHeaders(e.Seq, e.ID, e.Hash, rec.Payload),
			}
			seq := e.Seq
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) { acks <- ack{seq, err} })
			inflight++
		}
		if inflight == 0 {
			if err := checkpoint(); err != nil {
				return progressed, err
			}
			select {
			case <-ctx.Done():
				return progressed, ctx.Err()
			case <-wake:
			case <-time.After(200 * time.Millisecond):
			}
			lastAck = time.Now() // the ack clock starts with the next produce
			continue
		}
		// Wait for at least one ack, then take all that are there.
		select {
		case a := <-acks:
			if err := x.take(a, &next, &last, &inflight); err != nil {
				return progressed, err
			}
		case <-ctx.Done():
			return progressed, ctx.Err()
		case <-time.After(time.Until(lastAck.Add(x.cfg.AckTimeout))):
			return progressed, fmt.Errorf("kafka acknowledged nothing for %s with %d record(s) in flight (from seq %d)", x.cfg.AckTimeout, inflight, next)
		}
	drain:
		for {
			select {
			case a := <-acks:
				if err := x.take(a, &next, &last, &inflight); err != nil {
					return progressed, err
				}
			default:
				break drain
			}
		}
		lastAck, progressed = time.Now(), true
		if last-x.Exported() >= uint64(x.cfg.Batch) || inflight == 0 {
			if err := save(); err != nil {
				return progressed, err
			}
		}
		if time.Since(lastCkpt) >= time.Second { // keep checkpoints flowing under constant load
			if err := checkpoint(); err != nil {
				return progressed, err
			}
		}
		if time.Since(lastLog) >= 5*time.Second && inflight == window {
			x.cfg.Logf("kafka export: draining backlog: cursor at seq %d, durable head %d", x.Exported(), limit)
			lastLog = time.Now()
		}
	}
}

// take accounts one acknowledgement. Promises of one partition come in
// produce order, so acks arrive in seq order; anything else is a bug worth
// stopping the session for (the cursor stays at the acknowledged prefix).
func (x *Exporter) take(a ack, next, last *uint64, inflight *int) error {
	*inflight--
	if a.err != nil {
		return fmt.Errorf("kafka did not store seq %d: %w", a.seq, a.err)
	}
	if a.seq != *next {
		return fmt.Errorf("kafka acknowledged seq %d, expected %d (out of order)", a.seq, *next)
	}
	x.acked.Add(1)
	*last, *next = a.seq, a.seq+1
	return nil
}

// exportCheckpoints produces the checkpoints whose records are exported.
// It reads only what the WAL appended to the checkpoint log since the last
// call.
func (x *Exporter) exportCheckpoints(ctx context.Context, cl *kgo.Client) error {
	lines, first, err := x.ckptLog.Next()
	if err != nil {
		return err
	}
	done := x.cur.Checkpoints()
	for i, line := range lines {
		if first+i < done {
			continue // produced before
		}
		var c wal.Checkpoint
		if err := json.Unmarshal(line, &c); err != nil {
			return fmt.Errorf("%s checkpoint %d: %w", wal.CheckpointFile, first+i+1, err)
		}
		x.pending = append(x.pending, c)
	}
	var rs []*kgo.Record
	for i := 0; i < len(x.pending) && x.pending[i].Seq <= x.Exported(); i++ {
		c := x.pending[i]
		data, _ := json.Marshal(&c)
		rs = append(rs, &kgo.Record{
			Topic:   x.cfg.CheckpointTopic,
			Key:     []byte("ckpt-" + strconv.FormatUint(c.Seq, 10) + "-" + strconv.FormatInt(c.Time, 10)),
			Value:   data,
			Headers: []kgo.RecordHeader{{Key: HeaderSeq, Value: []byte(strconv.FormatUint(c.Seq, 10))}},
		})
	}
	if len(rs) == 0 {
		return nil
	}
	// Not ProduceSync: with the idempotent producer franz-go does not fail
	// a record that is already on the wire when its context ends, so a
	// broker that went away mid-request kept ProduceSync (and so the whole
	// exporter, even its cancellation) waiting far beyond AckTimeout. The
	// wait is bounded here; the session then ends and closing the client
	// fails what is left.
	pctx, cancel := context.WithTimeout(ctx, x.cfg.AckTimeout)
	defer cancel()
	res := make(chan error, len(rs)) // a late promise never blocks
	for _, r := range rs {
		cl.Produce(pctx, r, func(_ *kgo.Record, err error) { res <- err })
	}
	for range rs {
		select {
		case err := <-res:
			if err != nil {
				return fmt.Errorf("produce checkpoints to %s: %w", x.cfg.CheckpointTopic, err)
			}
		case <-pctx.Done():
			return fmt.Errorf("produce checkpoints to %s: kafka acknowledged them not within %s: %w", x.cfg.CheckpointTopic, x.cfg.AckTimeout, pctx.Err())
		}
	}
	done += len(rs)
	if err := x.cur.SetCheckpoints(done); err != nil {
		return err
	}
	x.pending = x.pending[len(rs):]
	if len(x.pending) == 0 {
		x.pending = nil // let the produced ones go
	}
	x.ckpts.Add(uint64(len(rs)))
	return nil
}
