package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// logFlags are the logging flags of every long-running command, and with
// them its runtime profile rates (diagnostics.go): one register call and one
// logger call at start-up give a command both.
type logFlags struct {
	format, level string
	verbose       bool
	profiles      profileFlags
}

func (l *logFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&l.format, "log-format", "text", "log format: text (key=value) or json (one object per line, for log pipelines)")
	fl.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	fl.BoolVarP(&l.verbose, "verbose", "v", false, "debug logging (same as --log-level debug)")
	l.profiles.register(fl)
}

// logger builds the command's slog logger writing to w, after setting the
// process's mutex and block profile rates.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	if err := l.profiles.apply(); err != nil {
		return nil, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: give debug, info, warn or error", l.level)
	}
	if l.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: give text or json", l.format)
}
