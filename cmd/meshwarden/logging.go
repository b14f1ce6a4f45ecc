package main

import (
	"io"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/meshwarden/meshwarden/internal/logflags"
)

// logFlags are the logging and runtime-profile flags of every long-running
// command (internal/logflags, shared with the audit collector and demo).
type logFlags struct{ logflags.Flags }

func (l *logFlags) register(fl *pflag.FlagSet) { l.Register(fl) }

// logger builds the command's slog logger writing to w, after setting the
// process's mutex and block profile rates.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) { return l.Logger(w) }
