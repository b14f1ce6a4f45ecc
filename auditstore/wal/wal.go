// Package wal is the audit collector's write-ahead log: append-only segment
// files of framed, hash-chained audit records, written with group commit (one
// fsync covers every batch waiting), rotated by size, pruned by retention, and
// anchored by Ed25519-signed checkpoints.
//
// A batch handed to [WAL.Append] returns only after its records are durable.
// On open, a torn tail (a record whose length or CRC-32C does not match) in
// the last segment is truncated to the last valid record; everything after
// that point was never acknowledged, because acknowledgement follows fsync.
package wal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Options configure a WAL. Zero values take the documented defaults.
type Options struct {
	// Dir holds the segments and the checkpoint log. Required.
	Dir string
	// SegmentSize rotates to a new segment once the current one would grow
	// past it. Default 64 MiB.
	SegmentSize int64
	// CheckpointEvery writes a signed checkpoint after this many records.
	// Default 1000.
	CheckpointEvery uint64
	// CheckpointInterval writes a signed checkpoint at least this often while
	// records arrive. Default 1s. Together with CheckpointEvery it bounds the
	// unsigned tail that `audit verify` cannot prove complete.
	CheckpointInterval time.Duration
	// DisableMerkle stops computing the RFC 6962 Merkle tree over records
	// (checkpoints then carry no root and no signed note). For benchmarks.
	DisableMerkle bool
	// DedupWindow is how many recent event ids the log remembers: an event
	// whose id is among them is not stored again, and its original seq is
	// returned in the Ack. Default 262144; negative disables.
	DedupWindow int
	// Signer signs checkpoints. Without it no checkpoints are written, and
	// retention never deletes anything (verification could not be anchored).
	Signer ed25519.PrivateKey
	// RetainSegments keeps at most this many segment files (0: no limit).
	RetainSegments int
	// RetainAge deletes closed segments older than this (0: no limit).
	RetainAge time.Duration
	// ExportedSeq, if set, reports the highest sequence the exporter has
	// delivered; segments holding later records are never deleted. With
	// several exporters (JetStream and Kafka), pass [MinExported] of their
	// cursors so the slowest one counts.
	ExportedSeq func() uint64
	// MaxBatchEvents bounds how many events one group commit gathers.
	// Default 65536.
	MaxBatchEvents int
	// Logf receives recovery and retention notes. Default: discard.
	Logf func(format string, args ...any)
}

// Stats are cumulative counters since Open.
type Stats struct {
	Events, Commits, Syncs, Bytes, Rotations, Checkpoints, Deleted uint64
	Duplicates                                                     uint64
	SyncNanos                                                      uint64
	RecoveredTruncatedBytes                                        int64
	Head                                                           uint64
}

// WAL is an open log. Use [Open]; close with [WAL.Close].
type WAL struct {
	opt  Options
	reqs chan *request
	done chan struct{}

	mu      sync.RWMutex // guards closed and changed
	closed  bool
	changed chan struct{}

	// Owned by the writer goroutine after Open.
	seg       *os.File
	segName   string
	segSize   int64
	head      uint64
	headHash  string
	ckptFile  *os.File
	ckptSeqs  map[uint64]bool
	lastCkpt  uint64
	lastCkptT time.Time
	err       error
	buf       []byte
	h         hash.Hash
	frontier  Frontier
	merkle    bool
	nsigner   note.Signer
	ids       *idWindow

	durable atomic.Uint64
	st      struct {
		events, commits, syncs, bytes, rotations, checkpoints, deleted, syncNanos, dups atomic.Uint64
	}
	truncated int64
}

type request struct {
	events []auditevent.Event
	// tmpls[i] is events[i]'s canonical encoding without its chain
	// position, and keys[i] its id's dedup key (nil without dedup): both
	// computed by Append in the caller's goroutine, so the single writer
	// only fills in seq and prev_hash and hashes.
	tmpls []auditevent.Template
	keys  []idKey
	ack   auditevent.Ack
	err   error
	done  chan struct{}
}

// recordOverhead is what a record's payload adds to the canonical encoding:
// the closing brace becomes ,"hash":"<64 hex>"}.
const recordOverhead = len(`,"hash":""`) + 2*sha256.Size

// maxPayloadLen is the largest payload t's event can have as a record: at a
// 20-digit seq (the most a uint64 has) after a 64-hex prev_hash.
func maxPayloadLen(t auditevent.Template) int {
	return t.ChainedLen(20, 2*sha256.Size) + recordOverhead
}

// ErrTooLarge is returned by Append for an event whose record would exceed
// MaxRecordSize; nothing of that batch is stored.
var ErrTooLarge = errors.New("audit event too large")

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit wal is closed")

// Open recovers the log in opt.Dir (creating it if needed) and starts the
// writer. ctx bounds recovery only.
func Open(ctx context.Context, opt Options) (*WAL, error) {
	if opt.Dir == "" {
		return nil, errors.New("audit wal: Dir is empty: set the directory that holds the audit segments")
	}
	if opt.SegmentSize <= 0 {
		opt.SegmentSize = 64 << 20
	}
	if opt.CheckpointEvery == 0 {
		opt.CheckpointEvery = 1000
	}
	if opt.CheckpointInterval <= 0 {
		opt.CheckpointInterval = time.Second
	}
	if opt.DedupWindow == 0 {
		opt.DedupWindow = 1 << 18
	}
	if opt.MaxBatchEvents <= 0 {
		opt.MaxBatchEvents = 65536
	}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(opt.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create audit dir: %w", err)
	}
	w := &WAL{
		opt: opt, reqs: make(chan *request, 4096), done: make(chan struct{}),
		changed: make(chan struct{}), ckptSeqs: map[uint64]bool{}, h: sha256.New(),
		merkle: !opt.DisableMerkle,
	}
	if opt.DedupWindow > 0 {
		w.ids = newIDWindow(opt.DedupWindow)
	}
	if opt.Signer != nil && w.merkle {
		ns, err := NewNoteSigner(opt.Signer)
		if err != nil {
			return nil, err
		}
		w.nsigner = ns
	}
	if err := w.recover(ctx); err != nil {
		return nil, err
	}
	if err := w.rebuild(ctx); err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

func (w *WAL) recover(ctx context.Context) error {
	cps, err := ReadCheckpoints(w.opt.Dir)
	if err != nil {
		return err
	}
	for _, c := range cps {
		w.ckptSeqs[c.Seq] = true
		if c.Seq >= w.lastCkpt {
			w.lastCkpt = c.Seq
		}
	}
	w.lastCkptT = time.Now()
	if w.opt.Signer != nil {
		if err := trimTornLine(filepath.Join(w.opt.Dir, CheckpointFile)); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(w.opt.Dir, CheckpointFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("open checkpoint log: %w", err)
		}
		w.ckptFile = f
	}
	segs, err := ListSegments(w.opt.Dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return w.openSegment(1)
	}
	last := segs[len(segs)-1]
	head, hash, validEnd, n, err := scanTail(ctx, last.Path)
	if err != nil {
		return err
	}
	if n == 0 {
		// Empty (freshly rotated) segment: the head is the previous segment's
		// last record, or the checkpoint at the boundary.
		head, hash = last.FirstSeq-1, ""
		if len(segs) > 1 {
			ph, phash, _, pn, err := scanTail(ctx, segs[len(segs)-2].Path)
			if err != nil {
				return err
			}
			if pn > 0 {
				head, hash = ph, phash
			}
		} else if head > 0 {
			for _, c := range cps {
				if c.Seq == head {
					hash = c.Hash
				}
			}
			if hash == "" {
				return fmt.Errorf("audit wal: segment %s starts at seq %d but no record or checkpoint gives the chain head before it: restore the missing segments", last.Name, last.FirstSeq)
			}
		}
	}
	fi, err := os.Stat(last.Path)
	if err != nil {
		return err
	}
	if validEnd < fi.Size() {
		if head < w.lastCkpt {
			return fmt.Errorf("audit wal: segment %s is corrupt at offset %d, before the last signed checkpoint (seq %d): this is not a torn write; run `meshwarden audit verify` and restore from backup", last.Name, validEnd, w.lastCkpt)
		}
		w.truncated = fi.Size() - validEnd
		w.opt.Logf("audit wal: truncating torn tail of %s: %d bytes after offset %d (last valid seq %d)", last.Name, w.truncated, validEnd, head)
		if err := os.Truncate(last.Path, validEnd); err != nil {
			return fmt.Errorf("truncate torn tail: %w", err)
		}
	}
	f, err := os.OpenFile(last.Path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open audit segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync audit segment: %w", err)
	}
	w.seg, w.segName, w.segSize = f, last.Name, validEnd
	w.head, w.headHash = head, hash
	w.durable.Store(head)
	return syncDir(w.opt.Dir)
}

// scanTail reads every valid record of path and returns the last one's seq
// and hash, the offset after it, and the number of valid records.
func scanTail(ctx context.Context, path string) (seq uint64, hash string, end int64, n int, err error) {
	r, err := OpenSegment(path, 0)
	if err != nil {
		return 0, "", 0, 0, err
	}
	defer r.Close()
	var last []byte
	for {
		if n%4096 == 0 && ctx.Err() != nil {
			return 0, "", 0, 0, ctx.Err()
		}
		rec, err := r.Next()
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, ErrCorrupt) {
				break
			}
			return 0, "", 0, 0, err
		}
		last = append(last[:0], rec.Payload...)
		n++
	}
	if n > 0 {
		var e struct {
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(last, &e); err != nil {
			return 0, "", 0, 0, fmt.Errorf("audit wal: last record of %s has a valid checksum but is not JSON: run `meshwarden audit verify`: %w", filepath.Base(path), err)
		}
		seq, hash = e.Seq, e.Hash
	}
	return seq, hash, r.Offset(), n, nil
}

func (w *WAL) openSegment(first uint64) error {
	name := segmentName(first)
	f, err := os.OpenFile(filepath.Join(w.opt.Dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("create audit segment: %w", err)
	}
	w.seg, w.segName, w.segSize = f, name, 0
	return syncDir(w.opt.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync audit dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync audit dir: %w", err)
	}
	return nil
}

// Append chains events (assigning Seq, PrevHash and Hash in place), writes
// them, and returns once they are fsynced. The returned Ack describes them.
// If ctx ends first, Append returns ctx's error: the events may or may not
// be stored, and must be treated as not acknowledged.
func (w *WAL) Append(ctx context.Context, events []auditevent.Event) (auditevent.Ack, error) {
	if len(events) == 0 {
		return auditevent.Ack{}, nil
	}
	r := &request{events: events, done: make(chan struct{}), tmpls: make([]auditevent.Template, len(events))}
	if err := w.prepare(r); err != nil {
		return auditevent.Ack{}, err
	}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return auditevent.Ack{}, ErrClosed
	}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		w.mu.RUnlock()
		return auditevent.Ack{}, ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case <-r.done:
		return r.ack, r.err
	case <-ctx.Done():
		return auditevent.Ack{}, ctx.Err()
	}
}

// prepare sanitizes r's events, encodes their templates into one buffer,
// computes their dedup keys and refuses the batch if a record would be
// larger than MaxRecordSize. It runs in the caller's goroutine, so
// concurrent requests encode in parallel.
func (w *WAL) prepare(r *request) error {
	type span struct{ start, end int }
	spans := make([]span, len(r.events))
	buf := make([]byte, 0, 512*len(r.events))
	for i := range r.events {
		e := &r.events[i]
		sanitize(e)
		start := len(buf)
		var t auditevent.Template
		buf, t = e.AppendTemplate(buf)
		spans[i] = span{start, len(buf)}
		r.tmpls[i] = t
		// The largest seq has 20 digits; prev_hash is 64 hex digits.
		if n := maxPayloadLen(t); n > MaxRecordSize {
			return fmt.Errorf("%w: event %d (%s) encodes to %d bytes, more than %d: capture fewer headers", ErrTooLarge, i, e.ID, n, MaxRecordSize)
		}
	}
	for i, sp := range spans {
		r.tmpls[i].Bytes = buf[sp.start:sp.end:sp.end] // buf may have moved while growing
	}
	if w.ids != nil {
		r.keys = make([]idKey, len(r.events))
		for i := range r.events {
			r.keys[i] = w.ids.key(r.events[i].ID)
		}
	}
	return nil
}

// Durable returns the highest sequence number known to be on disk.
func (w *WAL) Durable() uint64 { return w.durable.Load() }

// Changed returns a channel closed at the next commit, for followers.
func (w *WAL) Changed() <-chan struct{} {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.changed
}

// Dir is the log's directory.
func (w *WAL) Dir() string { return w.opt.Dir }

// Stats returns the counters.
func (w *WAL) Stats() Stats {
	return Stats{
		Events: w.st.events.Load(), Commits: w.st.commits.Load(), Syncs: w.st.syncs.Load(),
		Bytes: w.st.bytes.Load(), Rotations: w.st.rotations.Load(), Checkpoints: w.st.checkpoints.Load(),
		Deleted: w.st.deleted.Load(), SyncNanos: w.st.syncNanos.Load(), Duplicates: w.st.dups.Load(),
		RecoveredTruncatedBytes: w.truncated, Head: w.durable.Load(),
	}
}

// Close stops accepting batches, commits those already queued, writes a
// final checkpoint and closes the files.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return w.err
	}
	w.closed = true
	close(w.reqs)
	w.mu.Unlock()
	<-w.done
	return w.err
}

func (w *WAL) run() {
	defer close(w.done)
	tick := time.NewTicker(min(w.opt.CheckpointInterval, time.Second))
	defer tick.Stop()
	batch := make([]*request, 0, 256)
	for {
		select {
		case r, ok := <-w.reqs:
			if !ok {
				w.checkpoint()
				w.closeFiles()
				return
			}
			batch = append(batch[:0], r)
			n := len(r.events)
		drain:
			for n < w.opt.MaxBatchEvents {
				select {
				case r2, ok := <-w.reqs:
					if !ok {
						break drain
					}
					batch = append(batch, r2)
					n += len(r2.events)
				default:
					break drain
				}
			}
			w.commit(batch)
		case now := <-tick.C:
			if w.err == nil && w.head > w.lastCkpt && now.Sub(w.lastCkptT) >= w.opt.CheckpointInterval {
				w.checkpoint()
			}
			if w.err == nil {
				w.retain(now)
			}
		}
	}
}

func (w *WAL) closeFiles() {
	if w.seg != nil {
		if err := w.seg.Close(); err != nil && w.err == nil {
			w.err = err
		}
	}
	if w.ckptFile != nil {
		w.ckptFile.Close()
	}
}

func (w *WAL) fail(batch []*request, err error) {
	if w.err == nil {
		w.err = fmt.Errorf("audit wal failed, restart the collector to recover: %w", err)
		w.opt.Logf("%v", w.err)
	}
	for _, r := range batch {
		r.err = w.err
		close(r.done)
	}
}

// commit writes every request of batch with one fsync (more only when a
// segment rotates in the middle) and then answers them.
func (w *WAL) commit(batch []*request) {
	if w.err != nil {
		w.fail(batch, w.err)
		return
	}
	head, prev := w.head, w.headHash
	buf := w.buf[:0]
	var sum [sha256.Size]byte
	var hexSum [2 * sha256.Size]byte
	for _, r := range batch {
		r.ack.FirstSeq = head + 1
		for i := range r.events {
			e := &r.events[i]
			var key idKey
			if w.ids != nil {
				key = r.keys[i]
				if s, ok := w.ids.seqs[key]; ok {
					e.Seq, e.PrevHash, e.Hash = s, "", ""
					r.ack.Duplicates = append(r.ack.Duplicates, auditevent.Duplicate{ID: e.ID, Seq: s})
					continue
				}
			}
			head++
			e.Seq, e.PrevHash = head, prev
			start := len(buf)
			buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
			buf = r.tmpls[i].AppendChained(buf, head, prev)
			w.h.Reset()
			w.h.Write([]byte(prev))
			w.h.Write(buf[start+headerSize:])
			hex.Encode(hexSum[:], w.h.Sum(sum[:0]))
			e.Hash = string(hexSum[:])
			prev = e.Hash
			buf = buf[:len(buf)-1]
			buf = append(buf, `,"hash":"`...)
			buf = append(buf, hexSum[:]...)
			buf = append(buf, '"', '}')
			finishHeader(buf[start:])
			if len(buf)-start-headerSize > MaxRecordSize {
				w.buf = buf[:0]
				w.fail(batch, fmt.Errorf("record %s is %d bytes, larger than %d", e.ID, len(buf)-start, MaxRecordSize))
				return
			}
			// Rotate before this record if it would overflow a non-empty segment.
			if w.segSize+int64(len(buf)) > w.opt.SegmentSize && w.segSize+int64(start) > 0 {
				if err := w.write(buf[:start], head-1, w.headAt(batch, head-1, prev)); err != nil {
					w.fail(batch, err)
					return
				}
				if err := w.rotate(head); err != nil {
					w.fail(batch, err)
					return
				}
				buf = append(buf[:0], buf[start:]...)
				start = 0
			}
			if w.merkle {
				w.frontier.Add(tlog.RecordHash(buf[start+headerSize:]))
			}
			if w.ids != nil {
				w.ids.insert(key, head)
			}
		}
		r.ack.LastSeq, r.ack.Hash, r.ack.Accepted = head, prev, len(r.events)-len(r.ack.Duplicates)
		if r.ack.Accepted == 0 {
			r.ack.FirstSeq, r.ack.LastSeq = 0, 0
		}
	}
	if err := w.write(buf, head, prev); err != nil {
		w.fail(batch, err)
		return
	}
	w.buf = buf[:0]
	w.st.commits.Add(1)
	for _, r := range batch {
		w.st.events.Add(uint64(r.ack.Accepted))
		w.st.dups.Add(uint64(len(r.ack.Duplicates)))
		close(r.done)
	}
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
	if w.head-w.lastCkpt >= w.opt.CheckpointEvery {
		w.checkpoint()
	}
}

// headAt finds the hash of record seq among the batch (for a mid-batch rotation).
func (w *WAL) headAt(batch []*request, seq uint64, fallback string) string {
	if seq == w.head {
		return w.headHash
	}
	for _, r := range batch {
		for i := range r.events {
			if r.events[i].Seq == seq && r.events[i].Hash != "" {
				return r.events[i].Hash
			}
		}
	}
	return fallback
}

func finishHeader(b []byte) {
	p := b[headerSize:]
	putU32(b[0:], uint32(len(p)))
	putU32(b[4:], crc32c(p))
}

// write appends b to the current segment and fsyncs; afterwards records up
// to seq (whose hash is hash) are durable.
func (w *WAL) write(b []byte, seq uint64, hash string) error {
	if len(b) > 0 {
		if _, err := w.seg.Write(b); err != nil {
			return fmt.Errorf("write audit segment %s: %w", w.segName, err)
		}
		t := time.Now()
		if err := syscall.Fdatasync(int(w.seg.Fd())); err != nil {
			return fmt.Errorf("fsync audit segment %s: %w", w.segName, err)
		}
		w.st.syncNanos.Add(uint64(time.Since(t)))
		w.st.syncs.Add(1)
		w.st.bytes.Add(uint64(len(b)))
		w.segSize += int64(len(b))
	}
	w.head, w.headHash = seq, hash
	w.durable.Store(seq)
	return nil
}

// rotate closes the current segment, checkpoints its last record and opens
// the segment whose first record is next.
func (w *WAL) rotate(next uint64) error {
	if err := w.seg.Close(); err != nil {
		return fmt.Errorf("close audit segment: %w", err)
	}
	w.checkpoint()
	if err := w.openSegment(next); err != nil {
		return err
	}
	w.st.rotations.Add(1)
	w.retain(time.Now())
	return nil
}

// checkpoint signs and durably appends the current head.
func (w *WAL) checkpoint() {
	if w.opt.Signer == nil || w.ckptFile == nil || w.head == 0 || w.ckptSeqs[w.head] {
		return
	}
	if w.writeCheckpoint(0) {
		w.ckptSeqs[w.head] = true
	}
}

// writeCheckpoint signs the head (with start > 0: a retention statement
// that the trail now starts at start) and durably appends it.
func (w *WAL) writeCheckpoint(start uint64) bool {
	c := Checkpoint{Seq: w.head, Hash: w.headHash, Time: time.Now().UnixNano(), Segment: w.segName, Start: start}
	if w.merkle && w.frontier.Size == w.head {
		c.Root = w.frontier.Root().String()
		c.Frontier = w.frontier.encode()
		if w.nsigner != nil {
			if err := c.signNote(w.nsigner); err != nil {
				w.opt.Logf("audit wal: %v", err)
				return false
			}
		}
	}
	c.Sign(w.opt.Signer)
	line, _ := json.Marshal(&c)
	line = append(line, '\n')
	if _, err := w.ckptFile.Write(line); err != nil {
		w.opt.Logf("audit wal: write checkpoint: %v", err)
		return false
	}
	if err := w.ckptFile.Sync(); err != nil {
		w.opt.Logf("audit wal: sync checkpoint: %v", err)
		return false
	}
	w.lastCkpt, w.lastCkptT = c.Seq, time.Now()
	w.st.checkpoints.Add(1)
	return true
}

// retain deletes the oldest closed segments beyond RetainSegments or older
// than RetainAge, but only while the segment's last record is covered by a
// signed checkpoint (so verify can anchor the next segment's first
// prev_hash) and, with an exporter, already exported.
func (w *WAL) retain(now time.Time) {
	if w.opt.Signer == nil || (w.opt.RetainSegments <= 0 && w.opt.RetainAge <= 0) {
		return
	}
	segs, err := ListSegments(w.opt.Dir)
	if err != nil {
		return
	}
	for len(segs) > 1 && segs[0].Name != w.segName {
		s, next := segs[0], segs[1]
		over := w.opt.RetainSegments > 0 && len(segs) > w.opt.RetainSegments
		if !over && w.opt.RetainAge > 0 {
			fi, err := os.Stat(s.Path)
			over = err == nil && now.Sub(fi.ModTime()) > w.opt.RetainAge
		}
		if !over {
			return
		}
		lastSeq := next.FirstSeq - 1
		if !w.ckptSeqs[lastSeq] {
			return
		}
		if w.opt.ExportedSeq != nil && w.opt.ExportedSeq() < lastSeq {
			return
		}
		// Say, signed, where the trail starts from now on before deleting,
		// so verify can tell retention from someone deleting segments.
		if !w.writeCheckpoint(next.FirstSeq) {
			return
		}
		if err := os.Remove(s.Path); err != nil {
			w.opt.Logf("audit wal: retention: %v", err)
			return
		}
		w.opt.Logf("audit wal: retention deleted %s (records up to seq %d)", s.Name, lastSeq)
		w.st.deleted.Add(1)
		segs = segs[1:]
	}
	_ = syncDir(w.opt.Dir)
}

// trimTornLine cuts a partial last line (a crash while appending a
// checkpoint) so the next checkpoint starts on a line of its own.
func trimTornLine(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || len(data) == 0 || data[len(data)-1] == '\n' {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read checkpoint log: %w", err)
	}
	keep := bytes.LastIndexByte(data, '\n') + 1
	if err := os.Truncate(path, int64(keep)); err != nil {
		return fmt.Errorf("trim torn checkpoint line: %w", err)
	}
	return nil
}
