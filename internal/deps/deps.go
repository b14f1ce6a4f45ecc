//go:build tools

// Package deps pins modules that packages are still being written against, so
// `go mod tidy` keeps them while the tree grows. It is never built.
package deps

import (
	_ "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	_ "github.com/goccy/go-yaml"
	_ "github.com/hashicorp/consul/api"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
	_ "github.com/tetratelabs/wazero"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "golang.org/x/crypto/acme"
	_ "google.golang.org/grpc"
	_ "sigs.k8s.io/yaml"
)
