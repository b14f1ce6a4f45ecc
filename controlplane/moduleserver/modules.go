// Package moduleserver is the control plane's content-addressed Wasm module
// server. It serves every *.wasm in a directory by the sha256 of its bytes:
//
//	GET /modules/<sha256>   the module (application/wasm); 404 if unknown
//	GET /modules/           JSON {"<name>": "<sha256>", ...}
//
// A module's name is its file name without ".wasm" (bin/filters/dye.wasm is
// "dye"). The directory is rescanned on demand (Scan) and by Run; a file is
// re-hashed only when its size or modification time changed. Superseded
// builds stay servable by hash until the process restarts, so proxies that
// are still on the previous module during a rollout can fetch it.
package moduleserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshwarden/meshwarden/internal/lifecycle"
)

// Server serves modules from one directory.
type Server struct {
	dir string
	log *slog.Logger

	mu     sync.RWMutex
	byName map[string]fileInfo
	blobs  map[string][]byte // sha256 -> bytes, including superseded builds
}

type fileInfo struct {
	sha   string
	size  int64
	mtime time.Time
}

// New returns a server for dir. Call Scan (or Run) to load it.
func New(dir string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{dir: dir, log: log, byName: map[string]fileInfo{}, blobs: map[string][]byte{}}
}

// Scan reads the directory and reports whether any name→sha256 changed. A
// missing directory is not an error (no modules yet).
func (s *Server) Scan() (bool, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if os.IsNotExist(err) {
			ents = nil
		} else {
			return false, fmt.Errorf("read filters dir %s: %w", s.dir, err)
		}
	}
	s.mu.RLock()
	old := maps.Clone(s.byName)
	s.mu.RUnlock()
	next := map[string]fileInfo{}
	newBlobs := map[string][]byte{}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".wasm")
		fi, err := e.Info()
		if err != nil {
			continue // removed while scanning
		}
		if o, ok := old[name]; ok && o.size == fi.Size() && o.mtime.Equal(fi.ModTime()) {
			next[name] = o
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return false, fmt.Errorf("read module %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		next[name] = fileInfo{sha: h, size: fi.Size(), mtime: fi.ModTime()}
		newBlobs[h] = b
	}
	changed := len(next) != len(old)
	for n, f := range next {
		if old[n].sha != f.sha {
			changed = true
		}
	}
	s.mu.Lock()
	s.byName = next
	for h, b := range newBlobs {
		s.blobs[h] = b
	}
	s.mu.Unlock()
	return changed, nil
}

// SHA256s returns the current name→sha256 map.
func (s *Server) SHA256s() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(s.byName))
	for n, f := range s.byName {
		out[n] = f.sha
	}
	return out
}

// Run rescans every interval until ctx ends, calling onChange after a
// change.
func (s *Server) Run(ctx context.Context, interval time.Duration, onChange func()) {
	lifecycle.Every(ctx, interval, func() {
		changed, err := s.Scan()
		if err != nil {
			s.log.Warn("module rescan failed", "err", err)
			return
		}
		if changed && onChange != nil {
			onChange()
		}
	})
}

// ServeHTTP serves /modules/ and /modules/<sha256>.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/modules/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if rest == "" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.SHA256s())
		return
	}
	s.mu.RLock()
	b, found := s.blobs[strings.ToLower(rest)]
	s.mu.RUnlock()
	if !found {
		http.Error(w, "no module with sha256 "+rest+": GET /modules/ lists the available ones", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/wasm")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("ETag", `"`+rest+`"`)
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(b)))
}

var _ http.Handler = (*Server)(nil)
