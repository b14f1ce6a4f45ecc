package kittest

import (
	"testing"

	"github.com/meshwarden/meshwarden/internal/testenv/logsink"
)

// LogSink is a slog.Handler keeping every record as "LEVEL message": a
// plugin's log, e.g. wasmhost.PluginConfig.Logger = slog.New(sink).
type LogSink = logsink.Sink

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
