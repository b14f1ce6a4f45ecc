package faulttest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/meshwarden/meshwarden/auditstore/internal/kafkatest"
	"github.com/meshwarden/meshwarden/auditstore/kafka"
)

// kafkaSeqs reads the audit topic from the start until it holds at least
// want records and returns how often each Mw-Audit-Seq arrived.
func kafkaSeqs(t *testing.T, addr string, want int) map[uint64]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{kafka.DefaultTopic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[uint64]int{}
	n := 0
	deadline := time.Now().Add(60 * time.Second)
	for n < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			n++
			for _, h := range r.Headers {
				if h.Key == kafka.HeaderSeq {
					s, err := strconv.ParseUint(string(h.Value), 10, 64)
					if err != nil {
						t.Fatalf("offset %d: %s = %q", r.Offset, h.Key, h.Value)
					}
					seen[s]++
				}
			}
		})
	}
	if n < want {
		t.Fatalf("read %d records from %s within 60s, want ≥%d", n, kafka.DefaultTopic, want)
	}
	return seen
}

// The collector binary with --kafka-brokers: an outage and a kill -9 during
// it lose nothing; every seq reaches Kafka (a re-send is allowed, a gap is
// not), and verify passes afterwards.
func TestKafkaDownThenUpThroughTheCLI(t *testing.T) {
	k := kafkatest.Start(t)
	e := newEnv(t)
	args := []string{"--kafka-brokers", k.Addr(), "--segment-size", "131072"}
	p := e.start(t, args...)
	total := sendN(t, p, 10) // 500
	if got := kafkaSeqs(t, k.Addr(), total); len(got) != total {
		t.Fatalf("Kafka holds %d distinct seqs, want %d", len(got), total)
	}
	k.Stop()                 // Kafka outage
	total += sendN(t, p, 10) // the collector keeps acknowledging
	p.kill9(t)               // and crashes during the outage
	p = e.start(t, args...)  // restarts; the exporter resumes from kafka.cursor
	total += sendN(t, p, 10) // 1500
	k.Restart()
	seen := kafkaSeqs(t, k.Addr(), total)
	p.stop(t)
	for s := uint64(1); s <= uint64(total); s++ {
		if seen[s] == 0 {
			t.Fatalf("seq %d never reached Kafka (%d distinct of %d)", s, len(seen), total)
		}
	}
	if !strings.Contains(p.stderr.String(), "exporting to kafka") {
		t.Errorf("collector did not say where it exports:\n%s", p.stderr.String())
	}
	if out, code := verifyCLI(t, e, e.dir); code != 0 {
		t.Fatalf("verify:\n%s", out)
	}
}

// A Kafka flag without --kafka-brokers is a usage error that names the flag,
// not a collector that silently exports nothing.
func TestKafkaFlagWithoutBrokersIsRefused(t *testing.T) {
	e := newEnv(t)
	cmd := exec.Command(bin, "audit", "collector", "--dir", e.dir, "--key", e.key, "--token-file", e.token,
		"--listen", "127.0.0.1:0", "--kafka-topic", "audit")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("collector started with --kafka-topic and no brokers:\n%s", out)
	}
	if !strings.Contains(string(out), "--kafka-topic given without --kafka-brokers") {
		t.Fatalf("error does not say what to change:\n%s", out)
	}
}
