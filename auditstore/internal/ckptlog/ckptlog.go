// Package ckptlog follows a WAL's append-only checkpoint log
// (checkpoints.jsonl) as it grows, for the exporters that publish the
// signed checkpoints (JetStream, Kafka).
package ckptlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Log follows an append-only checkpoint log (checkpoints.jsonl) as it
// grows: each call reads only the bytes appended since the previous one and
// hands back only complete lines, so a log of years of checkpoints costs no
// more to follow than a new one.
type Log struct {
	path string
	off  int64 // bytes consumed: the end of the last complete line read
	n    int   // non-blank lines before off (the index of the next one)
	buf  []byte
}

// New follows the checkpoint log at path from its start.
func New(path string) *Log { return &Log{path: path} }

// Next returns the complete non-blank lines appended since the last call
// and the index of the first of them (counting non-blank lines from the
// start of the log, as [wal.ReadCheckpoints] counts checkpoints). The lines
// are valid until the next call. A log that shrank (replaced by hand) is
// read again from its start.
func (l *Log) Next() ([][]byte, int, error) {
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, l.n, nil
	}
	if err != nil {
		return nil, l.n, fmt.Errorf("open checkpoint log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, l.n, fmt.Errorf("stat checkpoint log: %w", err)
	}
	if st.Size() < l.off {
		l.off, l.n = 0, 0
	}
	if st.Size() == l.off {
		return nil, l.n, nil
	}
	want := int(st.Size() - l.off)
	if cap(l.buf) < want {
		l.buf = make([]byte, want)
	}
	m, err := f.ReadAt(l.buf[:want], l.off)
	if err != nil && err != io.EOF {
		return nil, l.n, fmt.Errorf("read checkpoint log: %w", err)
	}
	data := l.buf[:m]
	end := bytes.LastIndexByte(data, '\n') + 1 // a line still being written waits
	first := l.n
	var lines [][]byte
	for rest := data[:end]; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		lines = append(lines, line)
		l.n++
	}
	l.off += int64(end)
	return lines, first, nil
}
