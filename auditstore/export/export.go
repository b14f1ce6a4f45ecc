// Package export ships the audit WAL to NATS JetStream, in sequence order,
// at least once, with a per-record Nats-Msg-Id so JetStream's duplicate
// window turns re-sends into exactly-once for consumers. The cursor (the
// last sequence JetStream acknowledged) is persisted, so after an outage or
// a restart the exporter resumes from the WAL where it stopped.
package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshwarden/meshwarden/auditstore/internal/ckptlog"
	"github.com/meshwarden/meshwarden/auditstore/internal/cursorfile"
	"github.com/meshwarden/meshwarden/auditstore/wal"
)

// CursorFile is the exporter's cursor in the WAL directory.
const CursorFile = "export.cursor"

// CheckpointCursorFile counts the checkpoint-log lines already exported.
const CheckpointCursorFile = "export.checkpoints.cursor"

// Config configures an Exporter.
type Config struct {
	// Dir is the WAL directory. Required.
	Dir string
	// URL of the NATS server(s), comma separated. Required.
	URL string
	// Stream is created (or updated) if needed. Default MESHWARDEN_AUDIT.
	Stream string
	// Subject records are published on. Default meshwarden.audit.events.
	Subject string
	// CheckpointSubject receives each signed checkpoint (the JSON line of
	// checkpoints.jsonl) once the records it covers are exported, so a copy
	// of the truncation evidence lives outside the collector's disk.
	// Default meshwarden.audit.checkpoints.
	CheckpointSubject string
	// Batch is how many records are in flight before waiting for acks.
	// Default 512.
	Batch int
	// Durable bounds what is read to records known to be fsynced (the
	// collector passes WAL.Durable). Nil: everything complete on disk.
	Durable func() uint64
	// Changed wakes the exporter when records arrive (WAL.Changed). Nil: poll.
	Changed func() <-chan struct{}
	// CheckpointsOnly publishes only the signed checkpoints (the witness),
	// not the records: the truncation evidence leaves the collector's disk
	// at a cost of one message per checkpoint instead of one per record.
	// The records then live only in the WAL (and Kafka, if configured), so
	// retention does not wait for this exporter.
	CheckpointsOnly bool
	// NATSOptions are extra connection options (credentials, TLS).
	NATSOptions []nats.Option
	// Logf receives outage notes. Default: discard.
	Logf func(format string, args ...any)

	fullDecode bool // benchmarks: decode every record fully (the old path)
}

// Exporter publishes WAL records to JetStream.
type Exporter struct {
	cfg Config
	cur *cursorfile.Cursors // records and checkpoint lines exported
	// ckpts follows the checkpoint log and pending holds the checkpoints
	// read from it but not yet published, oldest first (session goroutine
	// only; both are reset at the start of each session).
	ckpts     *ckptlog.Log
	pending   []wal.Checkpoint
	published atomic.Uint64
	failures  atomic.Uint64
	witnessed atomic.Uint64
}

// New loads the cursor and returns an exporter; call Run.
func New(cfg Config) (*Exporter, error) {
	if cfg.Dir == "" || cfg.URL == "" {
		return nil, errors.New("export: Dir and URL are required: set the WAL directory and --nats URL")
	}
	if cfg.Stream == "" {
		cfg.Stream = "MESHWARDEN_AUDIT"
	}
	if cfg.Subject == "" {
		cfg.Subject = "meshwarden.audit.events"
	}
	if cfg.CheckpointSubject == "" {
		cfg.CheckpointSubject = "meshwarden.audit.checkpoints"
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 512
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

// Exported is the last sequence JetStream acknowledged (the cursor).
func (x *Exporter) Exported() uint64 { return x.cur.Records() }

// Published counts publish acknowledgements (including re-sends).
func (x *Exporter) Published() uint64 { return x.published.Load() }

// Witnessed is the seq of the newest checkpoint JetStream acknowledged.
func (x *Exporter) Witnessed() uint64 { return x.witnessed.Load() }

// Failures counts outages (connection or publish failures).
func (x *Exporter) Failures() uint64 { return x.failures.Load() }

// MsgID is the dedup id of a record: its sequence and the head of its hash,
// unique per record and per chain.
func MsgID(seq uint64, hash string) string {
	if len(hash) > 16 {
		hash = hash[:16]
	}
	return strconv.FormatUint(seq, 10) + "-" + hash
}

// ReadCursor returns the persisted cursor of dir (0 if none).
func ReadCursor(dir string) (uint64, error) {
	return cursorfile.Read(filepath.Join(dir, CursorFile), cursorName, cursorFix)
}

// cursorName and cursorFix name the cursors in errors.
const (
	cursorName = "export cursor"
	cursorFix  = "delete it to re-export everything (JetStream dedups within its window)"
)

// exportCheckpoints publishes the checkpoints whose records are exported.
// It reads only what the WAL appended to the checkpoint log since the last
// call.
func (x *Exporter) exportCheckpoints(ctx context.Context, js jetstream.JetStream) error {
	lines, first, err := x.ckpts.Next()
	if err != nil {
		return err
	}
	prev := x.cur.Checkpoints()
	for i, line := range lines {
		idx := first + i
		if idx < prev-1 {
			continue // published in an earlier session
		}
		var c wal.Checkpoint
		if err := json.Unmarshal(line, &c); err != nil {
			return fmt.Errorf("%s checkpoint %d: %w", wal.CheckpointFile, idx+1, err)
		}
		if idx == prev-1 {
			x.witnessed.Store(c.Seq)
			continue
		}
		x.pending = append(x.pending, c)
	}
	done := prev
	// A checkpoint leaves once the records it covers did, unless only the
	// checkpoints are published (the WAL writes one only over durable records).
	for len(x.pending) > 0 && (x.cfg.CheckpointsOnly || x.pending[0].Seq <= x.Exported()) {
		c := x.pending[0]
		data, _ := json.Marshal(&c)
		m := nats.NewMsg(x.cfg.CheckpointSubject)
		m.Data = data
		m.Header.Set("Mw-Audit-Seq", strconv.FormatUint(c.Seq, 10))
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.PublishMsg(pctx, m, jetstream.WithMsgID("ckpt-"+strconv.FormatUint(c.Seq, 10)+"-"+strconv.FormatInt(c.Time, 10)))
		cancel()
		if err != nil {
			return fmt.Errorf("publish checkpoint seq %d: %w", c.Seq, err)
		}
		done++
		x.pending = x.pending[1:]
		x.witnessed.Store(c.Seq)
	}
	if len(x.pending) == 0 {
		x.pending = nil // let the published ones go
	}
	if done != x.cur.Checkpoints() {
		if err := x.cur.SetCheckpoints(done); err != nil {
			return err
		}
	}
	return nil
}

// Run exports until ctx ends. Outages are retried with backoff; Run returns
// only ctx's error or a WAL corruption.
func (x *Exporter) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := x.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, wal.ErrCorrupt) {
			return fmt.Errorf("export stopped: %w", err)
		}
		x.failures.Add(1)
		x.cfg.Logf("audit export: %v (cursor at seq %d; retrying in %s)", err, x.Exported(), backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// session connects, ensures the stream and pumps until an error.
func (x *Exporter) session(ctx context.Context) error {
	opts := append([]nats.Option{nats.Name("meshwarden-audit-exporter"), nats.MaxReconnects(0), nats.Timeout(2 * time.Second)}, x.cfg.NATSOptions...)
	nc, err := nats.Connect(x.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", x.cfg.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = js.CreateOrUpdateStream(sctx, jetstream.StreamConfig{
		Name: x.cfg.Stream, Subjects: []string{x.cfg.Subject, x.cfg.CheckpointSubject}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
		// The stream is the external witness of the trail: nobody may delete
		// or purge its messages (the checkpoints that expose a truncation).
		DenyDelete: true, DenyPurge: true,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("create jetstream stream %s: %w", x.cfg.Stream, err)
	}
	// Read the checkpoint log from its start once per session: what was
	// read but not published before an outage is read again.
	x.ckpts, x.pending = ckptlog.New(filepath.Join(x.cfg.Dir, wal.CheckpointFile)), nil
	if x.cfg.CheckpointsOnly {
		return x.witnessCheckpoints(ctx, nc, js)
	}
	f, err := wal.NewFollower(x.cfg.Dir, x.Exported()+1)
	if err != nil {
		return err
	}
	defer f.Close()
	f.SetLight(!x.cfg.fullDecode)
	// Up to two batches are in flight: while the acks of the first are
	// awaited, the second is already on the wire. The cursor only ever
	// moves to the end of a fully acknowledged prefix.
	type pending struct {
		seq uint64
		paf jetstream.PubAckFuture
	}
	queue := make([]pending, 0, 2*x.cfg.Batch)
	lastCkpt := time.Now()
	for {
		limit, wake := wal.FollowBounds(x.cfg.Durable, x.cfg.Changed)
		for len(queue) < 2*x.cfg.Batch {
			rec, e, err := f.Next(limit)
			if wal.IsWait(err) {
				break
			}
			if err != nil {
				return err
			}
			m := nats.NewMsg(x.cfg.Subject)
			m.Data = append([]byte(nil), rec.Payload...)
			m.Header.Set("Mw-Audit-Seq", strconv.FormatUint(e.Seq, 10))
			m.Header.Set("Mw-Audit-Id", e.ID)
			paf, err := js.PublishMsgAsync(m, jetstream.WithMsgID(MsgID(e.Seq, e.Hash)))
			if err != nil {
				return fmt.Errorf("publish seq %d: %w", e.Seq, err)
			}
			queue = append(queue, pending{e.Seq, paf})
		}
		if len(queue) == 0 {
			if err := x.exportCheckpoints(ctx, js); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
			case <-time.After(200 * time.Millisecond):
			}
			if nc.IsClosed() {
				return errors.New("nats connection closed")
			}
			continue
		}
		n := min(len(queue), x.cfg.Batch)
		timeout := time.After(10 * time.Second)
		for _, p := range queue[:n] {
			select {
			case <-p.paf.Ok():
				x.published.Add(1)
			case err := <-p.paf.Err():
				return fmt.Errorf("jetstream did not store seq %d: %w", p.seq, err)
			case <-timeout:
				return errors.New("jetstream acks timed out")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		last := queue[n-1].seq
		queue = append(queue[:0], queue[n:]...)
		if err := x.cur.SetRecords(last); err != nil {
			return err
		}
		if time.Since(lastCkpt) >= time.Second { // keep checkpoints flowing under constant load
			if err := x.exportCheckpoints(ctx, js); err != nil {
				return err
			}
			lastCkpt = time.Now()
		}
	}
}

// witnessCheckpoints publishes new checkpoints as the WAL writes them (it
// looks every 100 ms, reading only what was appended to the log) until an
// error or ctx ends.
func (x *Exporter) witnessCheckpoints(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	for {
		if err := x.exportCheckpoints(ctx, js); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if nc.IsClosed() {
			return errors.New("nats connection closed")
		}
	}
}

// Follow binds the exporter to a live WAL in the same process: only records
// up to durable() are read, and changed() wakes the exporter. Call before Run.
func (x *Exporter) Follow(durable func() uint64, changed func() <-chan struct{}) {
	x.cfg.Durable, x.cfg.Changed = durable, changed
}
