// Package cursorfile reads and writes an exporter's cursor: one decimal
// number in a file, replaced atomically (write, fsync, rename), so a crash
// leaves the old value or the new one, never a torn one.
package cursorfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// Read returns the number in path, 0 if the file does not exist. name says
// what the cursor is in errors ("export cursor"); fix says what to do about
// a corrupt one.
func Read(path, name, fix string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%s %s is corrupt (%v): %s", name, path, err, fix)
	}
	return v, nil
}

// Write replaces path's number with v durably.
func Write(path string, v uint64, name string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.WriteString(strconv.FormatUint(v, 10) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// Cursors is an exporter's durable progress in the WAL directory, each in
// its own file: the last record sequence exported and the number of
// checkpoint-log lines exported. Records may be read from any goroutine;
// the rest belongs to the exporter's own.
type Cursors struct {
	recordsPath, checkpointsPath, name string
	records                            atomic.Uint64
	checkpoints                        int
}

// Open reads an exporter's two cursor files in dir, 0 for a file that does
// not exist. name and fix are Read's ("export cursor", what to do about a
// corrupt one).
func Open(dir, recordsFile, checkpointsFile, name, fix string) (*Cursors, error) {
	c := &Cursors{recordsPath: filepath.Join(dir, recordsFile), checkpointsPath: filepath.Join(dir, checkpointsFile), name: name}
	r, err := Read(c.recordsPath, name, fix)
	if err != nil {
		return nil, err
	}
	n, err := Read(c.checkpointsPath, name, fix)
	if err != nil {
		return nil, err
	}
	c.records.Store(r)
	c.checkpoints = int(n)
	return c, nil
}

// Records is the last record sequence exported.
func (c *Cursors) Records() uint64 { return c.records.Load() }

// SetRecords persists seq as the last record exported, then reports it.
func (c *Cursors) SetRecords(seq uint64) error {
	if err := Write(c.recordsPath, seq, c.name); err != nil {
		return err
	}
	c.records.Store(seq)
	return nil
}

// Checkpoints is how many checkpoint-log lines were exported.
func (c *Cursors) Checkpoints() int { return c.checkpoints }

// SetCheckpoints persists n as the checkpoint lines exported.
func (c *Cursors) SetCheckpoints(n int) error {
	if err := Write(c.checkpointsPath, uint64(n), c.name); err != nil {
		return err
	}
	c.checkpoints = n
	return nil
}
