package wal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Record framing on disk:
//
//	uint32 little-endian payload length
//	uint32 little-endian CRC-32C (Castagnoli) of the payload
//	payload: the canonical JSON of the event with its "hash" field appended
const (
	headerSize = 8
	// MaxRecordSize bounds one record's payload; a larger length prefix can
	// only be a torn or corrupted header.
	MaxRecordSize = 1 << 20
	segmentExt    = ".seg"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a record whose length prefix or checksum does not match
// its bytes: a torn write at the tail, or tampering anywhere else.
var ErrCorrupt = errors.New("corrupt record")

// EncodeRecord appends the framed, canonical record of e (which must already
// be chained: PrevHash and Hash set) to b.
func EncodeRecord(b []byte, e *auditevent.Event) []byte {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	b = appendPayload(b, e)
	payload := b[start+headerSize:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b
}

// appendPayload appends canonical(e) with ,"hash":"…" before the closing brace.
func appendPayload(b []byte, e *auditevent.Event) []byte {
	b = e.AppendCanonical(b)
	b = b[:len(b)-1]
	b = append(b, `,"hash":`...)
	b = auditevent.AppendJSONString(b, e.Hash)
	return append(b, '}')
}

// DecodeEvent parses a record payload.
func DecodeEvent(payload []byte) (auditevent.Event, error) {
	var e auditevent.Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return e, fmt.Errorf("%w: payload is not an audit event: %v", ErrCorrupt, err)
	}
	return e, nil
}

// Segment names one segment file. Its name is the sequence number of the
// first record it holds (or will hold), zero-padded so names sort by order.
type Segment struct {
	Name     string // base name, e.g. 00000000000000000001.seg
	Path     string
	FirstSeq uint64
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

// ListSegments returns the segment files in dir ordered by first sequence.
func ListSegments(dir string) ([]Segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list audit segments: %w", err)
	}
	var segs []Segment
	for _, d := range ents {
		n := d.Name()
		if d.IsDir() || !strings.HasSuffix(n, segmentExt) {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(n, segmentExt), 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, Segment{Name: n, Path: filepath.Join(dir, n), FirstSeq: first})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].FirstSeq < segs[j].FirstSeq })
	return segs, nil
}

// Record is one framed record read from a segment.
type Record struct {
	Segment string // segment base name
	Offset  int64  // byte offset of the record header in the segment
	Size    int64  // header + payload bytes
	Payload []byte // valid until the next call to Next
}

// SegmentReader reads framed records from one segment with explicit offsets,
// so a reader that meets a partly written tail can retry later from the same
// place (used by tail -f and the exporter while the collector writes).
type SegmentReader struct {
	f    *os.File
	name string
	off  int64 // offset of the next record
	buf  []byte
	bufO int64 // file offset of buf[0]
}

// OpenSegment opens path for reading at offset off.
func OpenSegment(path string, off int64) (*SegmentReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open audit segment: %w", err)
	}
	return &SegmentReader{f: f, name: filepath.Base(path), off: off, bufO: off}, nil
}

// Name is the segment's base name.
func (s *SegmentReader) Name() string { return s.name }

// Offset is the offset of the next record.
func (s *SegmentReader) Offset() int64 { return s.off }

// Close closes the file.
func (s *SegmentReader) Close() error { return s.f.Close() }

// fill makes buf hold at least n bytes starting at s.off, reading ahead.
// It returns io.EOF (nothing at all) or io.ErrUnexpectedEOF (some, not n).
func (s *SegmentReader) fill(n int) error {
	if s.off < s.bufO || s.off > s.bufO+int64(len(s.buf)) {
		s.buf, s.bufO = s.buf[:0], s.off
	}
	// Drop consumed bytes.
	if d := int(s.off - s.bufO); d > 0 {
		s.buf = append(s.buf[:0], s.buf[d:]...)
		s.bufO = s.off
	}
	for len(s.buf) < n {
		want := max(n-len(s.buf), 256<<10)
		if cap(s.buf)-len(s.buf) < want {
			nb := make([]byte, len(s.buf), len(s.buf)+want)
			copy(nb, s.buf)
			s.buf = nb
		}
		m, err := s.f.ReadAt(s.buf[len(s.buf):len(s.buf)+want], s.bufO+int64(len(s.buf)))
		s.buf = s.buf[:len(s.buf)+m]
		if err == io.EOF || (err == nil && m == 0) {
			if len(s.buf) == 0 {
				return io.EOF
			}
			if len(s.buf) < n {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read audit segment %s: %w", s.name, err)
		}
	}
	return nil
}

// Next returns the next record. At a clean end it returns io.EOF; at a
// partial record io.ErrUnexpectedEOF (the reader does not advance, so a later
// call can succeed once the writer finished); at a checksum or length
// mismatch an error wrapping ErrCorrupt. Only a successful call advances.
func (s *SegmentReader) Next() (Record, error) {
	if err := s.fill(headerSize); err != nil {
		return Record{}, err
	}
	n := binary.LittleEndian.Uint32(s.buf[0:])
	sum := binary.LittleEndian.Uint32(s.buf[4:])
	if n == 0 || n > MaxRecordSize {
		return Record{Segment: s.name, Offset: s.off}, fmt.Errorf("%w: %s offset %d: length prefix %d is out of range", ErrCorrupt, s.name, s.off, n)
	}
	if err := s.fill(headerSize + int(n)); err != nil {
		return Record{}, err
	}
	p := s.buf[headerSize : headerSize+int(n)]
	rec := Record{Segment: s.name, Offset: s.off, Size: int64(headerSize + n), Payload: p}
	if crc32.Checksum(p, crcTable) != sum {
		return rec, fmt.Errorf("%w: %s offset %d: CRC-32C mismatch", ErrCorrupt, s.name, s.off)
	}
	s.off += rec.Size
	return rec, nil
}

func putU32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }

func crc32c(p []byte) uint32 { return crc32.Checksum(p, crcTable) }

// sanitize replaces invalid UTF-8 in e's strings with U+FFFD. The canonical
// encoding already does so when hashing, but a decoded record must re-encode
// to the very bytes that were hashed, so the stored event must hold valid
// UTF-8 (what encoding/json yields for HTTP senders anyway).
func sanitize(e *auditevent.Event) {
	for _, p := range []*string{&e.ID, (*string)(&e.Phase), (*string)(&e.Level), &e.OpType, &e.Subject, &e.Resource,
		&e.TraceID, &e.Dye, &e.Tenant, &e.Method, &e.Path, &e.BodyDigest, &e.Source} {
		if !utf8.ValidString(*p) {
			*p = strings.ToValidUTF8(*p, "\uFFFD")
		}
	}
	for i, r := range e.Redacted {
		if !utf8.ValidString(r) {
			e.Redacted[i] = strings.ToValidUTF8(r, "\uFFFD")
		}
	}
	for k, v := range e.Headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			delete(e.Headers, k)
			e.Headers[strings.ToValidUTF8(k, "\uFFFD")] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
}
