package collector

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/meshwarden/meshwarden/auditstore/export"
	"github.com/meshwarden/meshwarden/auditstore/internal/loadgen"
	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// BenchmarkIngestEvidence measures durable ingest over HTTP side by side in
// one run: evidence features off (hash chain + signed checkpoints only, as
// before) and on (Merkle tree + signed notes + event-id dedup), each without
// and with the exporter publishing records and signed checkpoints to an
// in-process JetStream server (the witness; on this machine it shares the
// two cores with the collector and the load generator), or publishing only
// the checkpoints (--nats-checkpoints-only). Every event has a distinct id.
//
//	go test -run '^$' -bench BenchmarkIngestEvidence -benchtime 200000x ./auditstore/collector/
func BenchmarkIngestEvidence(b *testing.B) {
	const senders, batch = 8, 50
	for _, tc := range []struct {
		name              string
		on, witness, ckpt bool
	}{
		{"off", false, false, false},
		{"merkle+dedup", true, false, false},
		{"merkle+dedup+checkpoint-witness", true, true, true},
		{"off+jetstream", false, true, false},
		{"merkle+dedup+jetstream-witness", true, true, false},
	} {
		on, witness, ckpt := tc.on, tc.witness, tc.ckpt
		b.Run("evidence="+tc.name, func(b *testing.B) {
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			dir := b.TempDir()
			opt := wal.Options{Dir: dir, Signer: k}
			if !on {
				opt.DisableMerkle, opt.DedupWindow = true, -1
			}
			w, err := wal.Open(context.Background(), opt)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var bg sync.WaitGroup
			if witness {
				ns := natstest.Start(b)
				x, err := export.New(export.Config{Dir: dir, URL: ns.URL(), CheckpointsOnly: ckpt})
				if err != nil {
					b.Fatal(err)
				}
				x.Follow(w.Durable, w.Changed)
				bg.Go(func() { _ = x.Run(ctx) })
			}
			s, err := New(Config{WAL: w, Tokens: []string{"t"}})
			if err != nil {
				b.Fatal(err)
			}
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx, ln) }()
			defer func() { cancel(); <-done; bg.Wait(); w.Close() }()
			url := "http://" + ln.Addr().String() + auditevent.IngestPath
			batches := b.N/batch + 1
			bodies := benchBodies(batches, batch)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders}}
			res := loadgen.Closed(b, senders, batches, func() func(int) error {
				return func(i int) error { return loadgen.Post(client, url, "t", bodies[i]) }
			})
			report(b, w, res)
			b.ReportMetric(float64(w.Stats().Checkpoints), "checkpoints")
		})
	}
}
