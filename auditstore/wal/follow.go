package wal

import (
	"errors"
	"fmt"
	"io"

	"github.com/meshwarden/meshwarden/internal/audit"
)

// Follower reads records in sequence order across segments, starting at a
// given sequence number, and can be polled while the collector appends
// (audit tail -f, the JetStream exporter).
type Follower struct {
	dir  string
	next uint64
	seg  Segment
	r    *SegmentReader
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
func (f *Follower) Next(limit uint64) (Record, audit.Event, error) {
	for {
		if f.next > limit {
			return Record{}, audit.Event{}, io.EOF
		}
		if f.r == nil {
			if err := f.open(); err != nil {
				return Record{}, audit.Event{}, err
			}
		}
		rec, err := f.r.Next()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			// Move on only if the next segment exists and this one is done.
			segs, lerr := ListSegments(f.dir)
			if lerr != nil {
				return Record{}, audit.Event{}, lerr
			}
			moved := false
			for _, s := range segs {
				if s.FirstSeq == f.next && s.Name != f.seg.Name {
					if err == io.ErrUnexpectedEOF {
						return Record{}, audit.Event{}, fmt.Errorf("%w: segment %s ends in the middle of a record but a later segment exists", ErrCorrupt, f.seg.Name)
					}
					f.r.Close()
					r, oerr := OpenSegment(s.Path, 0)
					if oerr != nil {
						return Record{}, audit.Event{}, oerr
					}
					f.seg, f.r, moved = s, r, true
					break
				}
			}
			if !moved {
				return Record{}, audit.Event{}, io.EOF
			}
			continue
		}
		if err != nil {
			return Record{}, audit.Event{}, err
		}
		e, err := DecodeEvent(rec.Payload)
		if err != nil {
			return rec, e, err
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

// IsWait reports whether err from Next only means "nothing more yet".
func IsWait(err error) bool { return errors.Is(err, io.EOF) }
