package main

import (
	"log/slog"

	"go.opentelemetry.io/otel"
)

// routeOTelErrors sends the OpenTelemetry SDK's errors (a failed span
// export, say) to the command's logger instead of the standard log package.
// The SDK has one process-wide handler; a command that exports spans sets
// it once at start.
func routeOTelErrors(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "err", err)
	}))
}
