package export

import (
	"fmt"
	"testing"

	"github.com/meshwarden/meshwarden/auditstore/internal/backlog"
	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
)

// BenchmarkExportBacklog measures how fast the exporter drains a WAL backlog
// into JetStream (in-process nats-server, file storage). One op is one
// record.
//
//	go test -run '^$' -bench BenchmarkExportBacklog -benchtime 100000x ./auditstore/export/
func BenchmarkExportBacklog(b *testing.B) {
	for _, full := range []bool{true, false} {
		b.Run(fmt.Sprintf("fullDecode=%v", full), func(b *testing.B) { benchExport(b, full) })
	}
}

func benchExport(b *testing.B, full bool) {
	ns := natstest.Start(b)
	dir := b.TempDir()
	backlog.Write(b, dir)
	x, err := New(Config{Dir: dir, URL: ns.URL(), Batch: 1024, fullDecode: full})
	if err != nil {
		b.Fatal(err)
	}
	backlog.Drain(b, x.Run, x.Exported)
}
