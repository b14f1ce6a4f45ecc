package gateway

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// OTLPFromEnv reports whether the standard OpenTelemetry variables name a
// trace endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT), so spans are exported without
// --otlp-endpoint.
func OTLPFromEnv() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// NewOTLPTracerProvider returns a tracer provider exporting spans over
// OTLP/HTTP, with parent-based sampling: a sampled inbound traceparent is
// always recorded. Shut it down to flush the last batch.
//
// The exporter reads OpenTelemetry's standard variables itself:
// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS (e.g. an API key),
// _INSECURE, _CERTIFICATE (PEM roots for the collector's TLS certificate),
// _CLIENT_CERTIFICATE and _CLIENT_KEY (mTLS), _COMPRESSION and _TIMEOUT;
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the resource. An
// explicit endpoint (the CLI's --otlp-endpoint) overrides the variables'
// endpoint: a URL keeps its scheme (https: TLS, with the variables'
// certificates), a bare host:port is plaintext HTTP. An empty endpoint
// leaves it all to the variables (TLS unless the endpoint is http:// or
// OTEL_EXPORTER_OTLP_INSECURE=true).
func NewOTLPTracerProvider(ctx context.Context, endpoint, serviceName string) (*sdktrace.TracerProvider, error) {
	var opts []otlptracehttp.Option
	plain := false
	switch {
	case endpoint == "":
	case strings.HasPrefix(endpoint, "http://"), strings.HasPrefix(endpoint, "https://"):
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(endpoint, "/")+"/v1/traces"))
	default:
		opts = append(opts, otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure())
		plain = true
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil && plain {
		return nil, fmt.Errorf("otlp exporter for %q: %w: a bare host:port is plaintext HTTP; give https://%s for TLS", endpoint, err, endpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp exporter for %q: %w: check --otlp-endpoint and OTEL_EXPORTER_OTLP_*", endpoint, err)
	}
	res, err := resource.New(ctx, resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(serviceName)), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("otlp resource: %w: check OTEL_RESOURCE_ATTRIBUTES", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))), nil
}
