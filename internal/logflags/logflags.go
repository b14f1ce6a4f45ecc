// Package logflags gives every long-running command (controlplane,
// gateway, audit collector, demo) the same logging and runtime-diagnostic
// flags and builds its log/slog logger from them:
//
//	--log-format text|json   key=value lines, or one JSON object per line
//	--log-level LEVEL        debug, info, warn or error
//	-v, --verbose            --log-level debug
//	--mutex-profile-fraction N, --block-profile-rate D
//	                         sampling of /debug/pprof/mutex and /block
package logflags

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Flags holds the values of the flags Register adds.
type Flags struct {
	Format, Level string
	Verbose       bool
	// MutexFraction and BlockRate set Go's mutex and block profile
	// sampling; both profiles are empty unless set.
	MutexFraction int
	BlockRate     time.Duration
}

// Register adds --log-format, --log-level, -v/--verbose and the profile
// rate flags to fl, for a command that serves /debug/pprof/.
func (f *Flags) Register(fl *pflag.FlagSet) {
	f.RegisterLogging(fl)
	fl.IntVar(&f.MutexFraction, "mutex-profile-fraction", 100, "sample 1 in N mutex contention events for /debug/pprof/mutex (0: off)")
	fl.DurationVar(&f.BlockRate, "block-profile-rate", time.Millisecond, "sample about one blocking event per this much time blocked for /debug/pprof/block (0: off)")
}

// RegisterLogging adds --log-format, --log-level and -v/--verbose only,
// for a command that serves no profiles (the audit collector): its profile
// rates stay off.
func (f *Flags) RegisterLogging(fl *pflag.FlagSet) {
	f.RegisterFormatLevel(fl)
	fl.BoolVarP(&f.Verbose, "verbose", "v", false, "debug logging (same as --log-level debug)")
}

// RegisterFormatLevel adds --log-format and --log-level only, for a command
// whose own -v means something else and that serves no profiles (demo).
func (f *Flags) RegisterFormatLevel(fl *pflag.FlagSet) {
	fl.StringVar(&f.Format, "log-format", "text", "log format: text (key=value) or json (one object per line, for log pipelines)")
	fl.StringVar(&f.Level, "log-level", "info", "log level: debug, info, warn or error")
}

// Logger checks the flags, sets the process's profile rates and returns
// the logger writing to w.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) {
	h, err := f.Handler(w)
	if err != nil {
		return nil, err
	}
	if f.MutexFraction < 0 || f.BlockRate < 0 {
		return nil, fmt.Errorf("--mutex-profile-fraction %d, --block-profile-rate %v: give 0 (off) or a positive value", f.MutexFraction, f.BlockRate)
	}
	runtime.SetMutexProfileFraction(f.MutexFraction)
	rate := 0
	if f.BlockRate > 0 {
		rate = int(max(f.BlockRate.Nanoseconds(), 1))
	}
	runtime.SetBlockProfileRate(rate)
	return slog.New(h), nil
}

// Handler returns the slog handler the format and level flags ask for.
func (f *Flags) Handler(w io.Writer) (slog.Handler, error) {
	level := slog.LevelInfo
	if f.Level != "" {
		if err := level.UnmarshalText([]byte(f.Level)); err != nil {
			return nil, fmt.Errorf("--log-level %q: give debug, info, warn or error", f.Level)
		}
	}
	if f.Verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.Format) {
	case "text", "":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format %q: give text or json", f.Format)
}

// Args returns the flags that give a child process the same format and
// level (the demo passes them to the processes it starts).
func (f *Flags) Args() []string {
	var out []string
	if f.Format != "" {
		out = append(out, "--log-format", f.Format)
	}
	if f.Level != "" {
		out = append(out, "--log-level", f.Level)
	}
	return out
}

// Printf adapts l to the printf-style Logf hooks of packages that take one
// (auditstore/wal, export, kafka): each call is one Info record.
func Printf(l *slog.Logger) func(format string, args ...any) {
	return func(format string, args ...any) { l.Info(fmt.Sprintf(format, args...)) }
}
