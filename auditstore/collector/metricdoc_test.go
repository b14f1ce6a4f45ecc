package collector

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/testenv/metricdoc"
)

// TestDocumentedSeriesFromStart: a collector that has received nothing
// already exports every series auditstore/README.md documents, so a rate
// or an alert on a counter sees its first increment.
func TestDocumentedSeriesFromStart(t *testing.T) {
	w, err := wal.Open(context.Background(), wal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	reg := prometheus.NewRegistry()
	if _, err := New(Config{WAL: w, Tokens: []string{"t"}, Registry: reg}); err != nil {
		t.Fatal(err)
	}
	const jetstream, kafka = "registered by the CLI with a JetStream exporter", "registered by the CLI with a Kafka exporter"
	metricdoc.Check(t, "collector", reg, "../README.md", 10, map[string]string{
		"meshwarden_audit_export_cursor_seq":       jetstream,
		"meshwarden_audit_export_failures_total":   jetstream,
		"meshwarden_audit_witness_seq":             jetstream,
		"meshwarden_audit_kafka_cursor_seq":        kafka,
		"meshwarden_audit_kafka_failures_total":    kafka,
		"meshwarden_audit_kafka_acked_total":       kafka,
		"meshwarden_audit_kafka_checkpoints_total": kafka,
	})
}
