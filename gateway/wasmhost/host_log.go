package wasmhost

import "log/slog"

// logFuncs are the logging hostcalls.
var logFuncs = []hostFunc{
	{"proxy_log", i32s(3), enumArg0(maxLogLevel, proxyLog)},
	{"proxy_get_log_level", i32s(1), proxyGetLogLevel},
}

// proxyLog(level, msg, msg_size) logs the guest's message to the plugin
// logger, unless it is below PluginConfig.LogLevel.
func proxyLog(in *instance, args []uint64) status {
	msg, ok := in.readArg(args, 1)
	if !ok {
		return statusInvalidMemoryAccess
	}
	lvl := LogLevel(arg(args, 0))
	if lvl < in.p.cfg.LogLevel {
		return statusOK
	}
	in.p.cfg.Logger.Log(in.ctx, slogLevel(lvl), string(msg), "plugin", in.p.cfg.Name, "context", in.cur)
	return statusOK
}

// proxyGetLogLevel(level_ptr) writes PluginConfig.LogLevel.
func proxyGetLogLevel(in *instance, args []uint64) status {
	return in.putU32(arg(args, 0), uint32(in.p.cfg.LogLevel))
}

func slogLevel(l LogLevel) slog.Level {
	switch l {
	case LogTrace, LogDebug:
		return slog.LevelDebug
	case LogInfo:
		return slog.LevelInfo
	case LogWarn:
		return slog.LevelWarn
	}
	return slog.LevelError
}
