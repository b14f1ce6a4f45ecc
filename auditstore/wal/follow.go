package wal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Follower reads records in sequence order across segments, starting at a
// given sequence number, and can be polled while the collector appends
// (audit tail -f, the JetStream exporter).
type Follower struct {
	dir   string
	next  uint64
	seg   Segment
	r     *SegmentReader
	light bool
}

// NewFollower positions a follower at the record with sequence from (or the
// first retained record, if from is older).
func NewFollower(dir string, from uint64) (*Follower, error) {
	f := &Follower{dir: dir, next: max(from, 1)}
	return f, nil
}

// NextSeq is the sequence number the next record should have.
func (f *Follower) NextSeq() uint64 { return f.next }

// Close releases the open segment.
func (f *Follower) Close() error {
	if f.r != nil {
		return f.r.Close()
	}
	return nil
}

func (f *Follower) open() error {
	segs, err := ListSegments(f.dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return io.EOF
	}
	s := segs[0]
	for _, c := range segs {
		if c.FirstSeq <= f.next {
			s = c
		}
	}
	r, err := OpenSegment(s.Path, 0)
	if err != nil {
		return err
	}
	f.seg, f.r = s, r
	if s.FirstSeq > f.next {
		f.next = s.FirstSeq
	}
	return nil
}

// Next returns the next record if it is complete on disk and its sequence
// is at most limit; otherwise io.EOF (poll again later). Records before the
// requested start are skipped.
func (f *Follower) Next(limit uint64) (Record, auditevent.Event, error) {
	for {
		if f.next > limit {
			return Record{}, auditevent.Event{}, io.EOF
		}
		if f.r == nil {
			if err := f.open(); err != nil {
				return Record{}, auditevent.Event{}, err
			}
		}
		rec, err := f.r.Next()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			// Move on only if the next segment exists and this one is done.
			segs, lerr := ListSegments(f.dir)
			if lerr != nil {
				return Record{}, auditevent.Event{}, lerr
			}
			moved := false
			for _, s := range segs {
				if s.FirstSeq == f.next && s.Name != f.seg.Name {
					if err == io.ErrUnexpectedEOF {
						return Record{}, auditevent.Event{}, fmt.Errorf("%w: segment %s ends in the middle of a record but a later segment exists", ErrCorrupt, f.seg.Name)
					}
					f.r.Close()
					r, oerr := OpenSegment(s.Path, 0)
					if oerr != nil {
						return Record{}, auditevent.Event{}, oerr
					}
					f.seg, f.r, moved = s, r, true
					break
				}
			}
			if !moved {
				return Record{}, auditevent.Event{}, io.EOF
			}
			continue
		}
		if err != nil {
			return Record{}, auditevent.Event{}, err
		}
		var e auditevent.Event
		ok := false
		if f.light {
			e, ok = decodeMeta(rec.Payload)
		}
		if !ok {
			if e, err = DecodeEvent(rec.Payload); err != nil {
				return rec, e, err
			}
		}
		if e.Seq < f.next {
			continue // before the requested start
		}
		if e.Seq != f.next {
			return rec, e, fmt.Errorf("%w: %s offset %d: expected seq %d, found %d", ErrCorrupt, rec.Segment, rec.Offset, f.next, e.Seq)
		}
		f.next++
		return rec, e, nil
	}
}

// FollowBounds is what a follower of a live WAL (an exporter) may read now
// and what wakes it: the limit for Next is durable() (the collector passes
// WAL.Durable; nil: everything complete on disk), and the channel is
// changed() (WAL.Changed; nil: none, the caller polls).
func FollowBounds(durable func() uint64, changed func() <-chan struct{}) (limit uint64, wake <-chan struct{}) {
	limit = math.MaxUint64
	if durable != nil {
		limit = durable()
	}
	if changed != nil {
		wake = changed()
	}
	return limit, wake
}

// IsWait reports whether err from Next only means "nothing more yet".
func IsWait(err error) bool { return errors.Is(err, io.EOF) }

// SetLight makes Next decode only Seq, ID and Hash (from the fixed layout of
// the canonical encoding, falling back to a full decode), for readers that
// forward the raw payload, like the exporter.
func (f *Follower) SetLight(light bool) { f.light = light }

// decodeMeta extracts seq, id and hash from a canonical payload:
// {"id":"…","seq":N,…,"hash":"<64 hex>"}.
func decodeMeta(p []byte) (auditevent.Event, bool) {
	var e auditevent.Event
	const pre = `{"id":"`
	if !bytes.HasPrefix(p, []byte(pre)) {
		return e, false
	}
	i := len(pre)
	esc := false
	for ; i < len(p); i++ {
		c := p[i]
		if esc {
			esc = false
			continue
		}
		if c == '\\' {
			esc = true
			continue
		}
		if c == '"' {
			break
		}
	}
	if i >= len(p) {
		return e, false
	}
	tok := p[len(pre)-1 : i+1]
	if bytes.IndexByte(tok, '\\') >= 0 {
		if json.Unmarshal(tok, &e.ID) != nil {
			return e, false
		}
	} else {
		e.ID = string(tok[1 : len(tok)-1])
	}
	rest := p[i+1:]
	const seqKey = `,"seq":`
	if !bytes.HasPrefix(rest, []byte(seqKey)) {
		return e, false
	}
	rest = rest[len(seqKey):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		e.Seq = e.Seq*10 + uint64(rest[j]-'0')
		j++
	}
	const hashKey = `,"hash":"`
	const tail = len(hashKey) + 64 + 2
	if j == 0 || len(p) < tail || !bytes.HasPrefix(p[len(p)-tail:], []byte(hashKey)) || !bytes.HasSuffix(p, []byte(`"}`)) {
		return e, false
	}
	e.Hash = string(p[len(p)-66 : len(p)-2])
	return e, true
}
