package proxywasm

import (
	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// LogLevel is a proxy-wasm log level.
type LogLevel = abi.LogLevel

// Log levels, lowest first.
const (
	LogLevelTrace    = abi.LogTrace
	LogLevelDebug    = abi.LogDebug
	LogLevelInfo     = abi.LogInfo
	LogLevelWarn     = abi.LogWarn
	LogLevelError    = abi.LogError
	LogLevelCritical = abi.LogCritical
)

// GetLogLevel returns the host's current log level, to skip building messages
// the host would discard.
func GetLogLevel() (LogLevel, error) {
	l, st := host().GetLogLevel()
	return l, st.Err()
}

func logAt(l LogLevel, msg string) { host().Log(l, msg) }

// logfAt formats with internal/guestfmt, which prints as fmt does for the
// verbs guests use (%s %q %d %v %w %x, width, precision): fmt itself would
// link os into every guest (issue 19, filters/README.md).
func logfAt(l LogLevel, format string, args ...any) {
	logAt(l, guestfmt.Sprintf(format, args...))
}

// LogTrace logs msg at trace level.
func LogTrace(msg string) { logAt(abi.LogTrace, msg) }

// LogTracef formats and logs at trace level.
func LogTracef(format string, args ...any) { logfAt(abi.LogTrace, format, args...) }

// LogDebug logs msg at debug level.
func LogDebug(msg string) { logAt(abi.LogDebug, msg) }

// LogDebugf formats and logs at debug level.
func LogDebugf(format string, args ...any) { logfAt(abi.LogDebug, format, args...) }

// LogInfo logs msg at info level.
func LogInfo(msg string) { logAt(abi.LogInfo, msg) }

// LogInfof formats and logs at info level.
func LogInfof(format string, args ...any) { logfAt(abi.LogInfo, format, args...) }

// LogWarn logs msg at warn level.
func LogWarn(msg string) { logAt(abi.LogWarn, msg) }

// LogWarnf formats and logs at warn level.
func LogWarnf(format string, args ...any) { logfAt(abi.LogWarn, format, args...) }

// LogError logs msg at error level.
func LogError(msg string) { logAt(abi.LogError, msg) }

// LogErrorf formats and logs at error level.
func LogErrorf(format string, args ...any) { logfAt(abi.LogError, format, args...) }

// LogCritical logs msg at critical level.
func LogCritical(msg string) { logAt(abi.LogCritical, msg) }

// LogCriticalf formats and logs at critical level.
func LogCriticalf(format string, args ...any) { logfAt(abi.LogCritical, format, args...) }
