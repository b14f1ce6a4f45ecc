package gateway

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// NewOTLPTracerProvider returns a tracer provider exporting spans over
// OTLP/HTTP to endpoint (host:port, or a URL such as http://host:4318), with
// parent-based sampling: a sampled inbound traceparent is always recorded.
// Shut it down to flush the last batch.
func NewOTLPTracerProvider(ctx context.Context, endpoint, serviceName string) (*sdktrace.TracerProvider, error) {
	opts := []otlptracehttp.Option{otlptracehttp.WithInsecure()}
	if len(endpoint) > 7 && (endpoint[:7] == "http://" || len(endpoint) > 8 && endpoint[:8] == "https://") {
		opts = []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint + "/v1/traces")}
	} else {
		opts = append(opts, otlptracehttp.WithEndpoint(endpoint))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter for %s: %w: check --otlp-endpoint", endpoint, err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(serviceName))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))), nil
}
