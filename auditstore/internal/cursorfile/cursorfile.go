// Package cursorfile reads and writes an exporter's cursor: one decimal
// number in a file, replaced atomically (write, fsync, rename), so a crash
// leaves the old value or the new one, never a torn one.
package cursorfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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
