// Package logsink is a slog.Handler that keeps every record as a line
// "LEVEL message", for tests that check what a plugin or a host logged
// (filters/kit/kittest, gateway/wasmhost).
package logsink

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Sink keeps the records it handles; the zero value is ready, and one Sink
// may be shared by concurrent loggers. Attributes and groups are dropped.
type Sink struct {
	mu   sync.Mutex
	msgs []string
}

func (l *Sink) Enabled(context.Context, slog.Level) bool { return true }

func (l *Sink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}

func (l *Sink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *Sink) WithGroup(string) slog.Handler      { return l }

// Lines returns a copy of the lines so far.
func (l *Sink) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// All returns the lines so far, one a line.
func (l *Sink) All() string { return strings.Join(l.Lines(), "\n") }

// Contains reports whether a line so far contains s.
func (l *Sink) Contains(s string) bool {
	return slices.ContainsFunc(l.Lines(), func(m string) bool { return strings.Contains(m, s) })
}

var _ slog.Handler = (*Sink)(nil)
