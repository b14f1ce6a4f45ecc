package gateway

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
)

// TestOTLPFromStandardVariables: the gateway's exporter is configured by
// OpenTelemetry's OTEL_EXPORTER_OTLP_* variables: endpoint, headers and
// the CA certificate of a TLS receiver on loopback; OTEL_SERVICE_NAME names
// the resource. Without the certificate, or in plaintext, nothing arrives.
func TestOTLPFromStandardVariables(t *testing.T) {
	sink := otlpsink.New(100)
	var refused atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("X-Api-Key") != "k-123" {
			refused.Add(1)
			http.Error(w, "want POST /v1/traces with x-api-key", http.StatusUnauthorized)
			return
		}
		sink.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "otlp-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// export sends one span and flushes; it returns NewOTLPTracerProvider's
	// error (a failed export is only logged, through otel's error handler).
	export := func(t *testing.T, endpoint, span string) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tp, err := NewOTLPTracerProvider(ctx, endpoint, "meshwarden-gateway")
		if err != nil {
			return err
		}
		_, s := tp.Tracer("test").Start(ctx, span)
		s.End()
		_ = tp.Shutdown(ctx)
		return nil
	}
	has := func(span string) bool {
		for _, s := range sink.Spans("") {
			if s.Name == span {
				return true
			}
		}
		return false
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k-123")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3000")
	t.Setenv("OTEL_SERVICE_NAME", "edge-gw-7")

	t.Run("no certificate: the receiver is not trusted", func(t *testing.T) {
		if err := export(t, "", "untrusted"); err != nil || has("untrusted") {
			t.Fatalf("export without OTEL_EXPORTER_OTLP_CERTIFICATE: err %v, span delivered %v", err, has("untrusted"))
		}
	})
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", caFile)
	if !OTLPFromEnv() {
		t.Fatal("OTLPFromEnv() = false with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	t.Run("endpoint, headers and certificate from the variables", func(t *testing.T) {
		if err := export(t, "", "from-env"); err != nil {
			t.Fatal(err)
		}
		var got *otlpsink.Span
		for _, s := range sink.Spans("") {
			if s.Name == "from-env" {
				got = &s
			}
		}
		if got == nil || got.Service != "edge-gw-7" {
			t.Fatalf("span from-env: %+v, want it from service edge-gw-7 (OTEL_SERVICE_NAME)", got)
		}
	})
	t.Run("an https --otlp-endpoint keeps the variables' certificate and headers", func(t *testing.T) {
		if err := export(t, srv.URL, "flag-url"); err != nil || !has("flag-url") {
			t.Fatalf("err %v, delivered %v", err, has("flag-url"))
		}
	})
	t.Run("a bare host:port is plaintext: refused with certificates set", func(t *testing.T) {
		err := export(t, strings.TrimPrefix(srv.URL, "https://"), "plain")
		if err == nil || !strings.Contains(err.Error(), "give https://") || has("plain") {
			t.Fatalf("plaintext endpoint with a TLS certificate configured: err %v, delivered %v", err, has("plain"))
		}
	})
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=wrong")
	t.Run("wrong header: refused", func(t *testing.T) {
		before := refused.Load()
		if err := export(t, "", "bad-key"); err != nil || has("bad-key") || refused.Load() == before {
			t.Fatalf("wrong x-api-key: err %v, delivered %v", err, has("bad-key"))
		}
	})
}
