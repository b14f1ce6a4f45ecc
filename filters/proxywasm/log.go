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
func (vm *VM) GetLogLevel() (LogLevel, error) {
	l, st := vm.host().GetLogLevel()
	return l, st.Err()
}

func (vm *VM) logAt(l LogLevel, msg string) { vm.host().Log(l, msg) }

// logfAt formats with internal/guestfmt, which prints as fmt does for the
// verbs guests use (%s %q %d %v %w %x, width, precision): fmt itself would
// link os into every guest (issue 19, filters/README.md).
func (vm *VM) logfAt(l LogLevel, format string, args ...any) {
	vm.logAt(l, guestfmt.Sprintf(format, args...))
}

// LogTrace logs msg at trace level.
func (vm *VM) LogTrace(msg string) { vm.logAt(abi.LogTrace, msg) }

// LogTracef formats and logs at trace level.
func (vm *VM) LogTracef(format string, args ...any) { vm.logfAt(abi.LogTrace, format, args...) }

// LogDebug logs msg at debug level.
func (vm *VM) LogDebug(msg string) { vm.logAt(abi.LogDebug, msg) }

// LogDebugf formats and logs at debug level.
func (vm *VM) LogDebugf(format string, args ...any) { vm.logfAt(abi.LogDebug, format, args...) }

// LogInfo logs msg at info level.
func (vm *VM) LogInfo(msg string) { vm.logAt(abi.LogInfo, msg) }

// LogInfof formats and logs at info level.
func (vm *VM) LogInfof(format string, args ...any) { vm.logfAt(abi.LogInfo, format, args...) }

// LogWarn logs msg at warn level.
func (vm *VM) LogWarn(msg string) { vm.logAt(abi.LogWarn, msg) }

// LogWarnf formats and logs at warn level.
func (vm *VM) LogWarnf(format string, args ...any) { vm.logfAt(abi.LogWarn, format, args...) }

// LogError logs msg at error level.
func (vm *VM) LogError(msg string) { vm.logAt(abi.LogError, msg) }

// LogErrorf formats and logs at error level.
func (vm *VM) LogErrorf(format string, args ...any) { vm.logfAt(abi.LogError, format, args...) }

// LogCritical logs msg at critical level.
func (vm *VM) LogCritical(msg string) { vm.logAt(abi.LogCritical, msg) }

// LogCriticalf formats and logs at critical level.
func (vm *VM) LogCriticalf(format string, args ...any) { vm.logfAt(abi.LogCritical, format, args...) }
