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
	names, err := metricdoc.Names("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("README documents %d series: the parser is broken: %v", len(names), names)
	}
	exempt := map[string]string{}
	for _, n := range names {
		switch n {
		case "meshwarden_audit_export_cursor_seq", "meshwarden_audit_export_failures_total", "meshwarden_audit_witness_seq":
			exempt[n] = "registered by the CLI with a JetStream exporter"
		case "meshwarden_audit_kafka_cursor_seq", "meshwarden_audit_kafka_failures_total",
			"meshwarden_audit_kafka_acked_total", "meshwarden_audit_kafka_checkpoints_total":
			exempt[n] = "registered by the CLI with a Kafka exporter"
		}
	}
	miss, err := metricdoc.Missing(reg, names, exempt)
	if err != nil {
		t.Fatal(err)
	}
	if len(miss) > 0 {
		t.Fatalf("documented but not exported by a fresh collector: %v", miss)
	}
}
