package kafka

import (
	"testing"

	"github.com/meshwarden/meshwarden/auditstore/internal/backlog"
	"github.com/meshwarden/meshwarden/auditstore/internal/kafkatest"
)

// BenchmarkExportBacklog measures how fast the exporter drains a WAL backlog
// into Kafka (franz-go's in-process kfake broker, synced writes to disk —
// no real Kafka broker can be installed on these machines, so the figure
// is the exporter's own cost plus kfake's, not a production cluster's).
// One op is one record.
//
//	go test -run '^$' -bench BenchmarkExportBacklog -benchtime 100000x ./auditstore/kafka/
func BenchmarkExportBacklog(b *testing.B) {
	k := kafkatest.Start(b)
	dir := b.TempDir()
	backlog.Write(b, dir)
	x, err := New(Config{Dir: dir, Brokers: []string{k.Addr()}, CreateTopics: true})
	if err != nil {
		b.Fatal(err)
	}
	backlog.Drain(b, x.Run, x.Exported)
}
