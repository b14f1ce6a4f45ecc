package kittest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// LogSink is a slog.Handler keeping every message: a plugin's log, e.g.
// wasmhost.PluginConfig.Logger = slog.New(sink).
type LogSink struct {
	mu   sync.Mutex
	msgs []string
}

func (l *LogSink) Enabled(context.Context, slog.Level) bool { return true }

func (l *LogSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *LogSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *LogSink) WithGroup(string) slog.Handler      { return l }

// All returns the messages so far, one a line.
func (l *LogSink) All() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

// Contains reports whether a message so far contains s.
func (l *LogSink) Contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

var _ slog.Handler = (*LogSink)(nil)

// Refuses checks that start, which starts a plugin logging to the sink it is
// given, fails and that the log names field.
func Refuses(t *testing.T, field string, start func(logs *LogSink) error) {
	t.Helper()
	logs := &LogSink{}
	if err := start(logs); err == nil {
		t.Fatalf("plugin started with a bad %s", field)
	}
	if !logs.Contains(field) {
		t.Errorf("logs do not name the field %s:\n%s", field, logs.All())
	}
}
