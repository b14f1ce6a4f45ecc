// Package modulefetch fetches proxy-wasm modules named by Envoy's remote data
// sources (vm_config.code.remote: an http_uri and a sha256), verifies their
// sha256 and keeps them in an on-disk cache keyed by that hash, so a restart
// or a module server outage does not stop a gateway from loading a module it
// has seen before.
package modulefetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultMaxSize bounds a fetched module when Fetcher.MaxSize is zero.
const DefaultMaxSize = 64 << 20

// Fetcher fetches and caches modules. The zero value fetches with
// http.DefaultClient and caches nothing.
type Fetcher struct {
	// Dir is the cache directory; empty disables the disk cache.
	Dir string
	// Client performs the fetches; nil means http.DefaultClient.
	Client *http.Client
	// Timeout bounds one fetch; zero means 30s.
	Timeout time.Duration
	// MaxSize bounds a module's size in bytes; zero means DefaultMaxSize.
	MaxSize int64
}

// ErrSHA256Mismatch is wrapped by Fetch when the served bytes do not hash to
// the expected sha256.
var ErrSHA256Mismatch = errors.New("module sha256 mismatch")

// Fetch returns the module at uri whose sha256 (lowercase hex) must be
// wantSHA. A module already in the cache is served from disk without
// contacting uri.
func (f *Fetcher) Fetch(ctx context.Context, uri, wantSHA string) ([]byte, error) {
	wantSHA = strings.ToLower(wantSHA)
	if len(wantSHA) != 64 {
		return nil, fmt.Errorf("module %s: sha256 %q is not 64 hex digits: set vm_config.code.remote.sha256", uri, wantSHA)
	}
	if f.Dir != "" {
		if b, err := os.ReadFile(f.path(wantSHA)); err == nil {
			if Sum(b) == wantSHA {
				return b, nil
			}
			_ = os.Remove(f.path(wantSHA)) // corrupt cache entry: fetch again
		}
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w: fix vm_config.code.remote.http_uri", uri, err)
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch module %s: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch module %s: status %d", uri, resp.StatusCode)
	}
	max := f.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("fetch module %s: %w", uri, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("fetch module %s: larger than %d bytes", uri, max)
	}
	if got := Sum(b); got != wantSHA {
		return nil, fmt.Errorf("fetch module %s: %w: got %s, want %s", uri, ErrSHA256Mismatch, got, wantSHA)
	}
	if f.Dir != "" {
		if err := f.store(wantSHA, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Sum returns the lowercase hex sha256 of b.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (f *Fetcher) path(sha string) string { return filepath.Join(f.Dir, sha+".wasm") }

// store writes the module atomically (temp file, rename) so a crash never
// leaves a truncated module under its hash.
func (f *Fetcher) store(sha string, b []byte) error {
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return fmt.Errorf("module cache %s: %w: choose a writable --cache-dir", f.Dir, err)
	}
	tmp, err := os.CreateTemp(f.Dir, sha+".*.tmp")
	if err != nil {
		return fmt.Errorf("module cache %s: %w: choose a writable --cache-dir", f.Dir, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("module cache write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("module cache write: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path(sha)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("module cache rename: %w", err)
	}
	return nil
}
