// Package guestbuild builds proxy-wasm guests for tests with the standard
// toolchain (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared), each
// package once per test binary: a build takes seconds.
package guestbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Cache builds each guest once and keeps its bytes. The zero value is not
// usable; use New.
type Cache struct {
	dir    string
	mu     sync.Mutex
	builds map[string]*build
}

type build struct {
	once sync.Once
	wasm []byte
	err  error
}

// New returns a cache that writes the builds into dir; an empty dir means a
// fresh temporary directory per build, removed once the bytes are read.
func New(dir string) *Cache { return &Cache{dir: dir, builds: map[string]*build{}} }

// Build returns the .wasm of the main package pkg (a path relative to the
// caller's directory, as go build takes it), building it on the first call
// for key.
func (c *Cache) Build(key, pkg string) ([]byte, error) {
	c.mu.Lock()
	b := c.builds[key]
	if b == nil {
		b = &build{}
		c.builds[key] = b
	}
	c.mu.Unlock()
	b.once.Do(func() { b.wasm, b.err = c.build(key, pkg) })
	return b.wasm, b.err
}

func (c *Cache) build(key, pkg string) ([]byte, error) {
	dir := c.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "guestbuild-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	out := filepath.Join(dir, strings.ReplaceAll(key, "/", "_")+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build guest %s: %v\n%s", key, err, msg)
	}
	return os.ReadFile(out)
}
