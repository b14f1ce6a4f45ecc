package kafka

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/meshwarden/meshwarden/auditstore/export"
	"github.com/meshwarden/meshwarden/auditstore/internal/cursorfile"
	"github.com/meshwarden/meshwarden/auditstore/internal/kafkatest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

// traceOf gives record i its trace situation: a W3C trace id (i%4==0), a
// captured traceparent + tracestate (1), a 64-bit B3 id (2), none (3).
func eventN(i int) auditevent.Event {
	e := auditevent.Event{ID: fmt.Sprintf("t%06d-1-intent", i), Phase: auditevent.PhaseIntent, OpType: "PAY",
		Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42", Timestamp: int64(1 + i)}
	tid := fmt.Sprintf("4bf92f3577b34da6a3ce929d%08x", i)
	switch i % 4 {
	case 0:
		e.TraceID = tid
	case 1:
		e.TraceID = tid
		e.Headers = map[string]string{"traceparent": "00-" + tid + "-00f067aa0ba902b7-01", "tracestate": "mw=1,congo=t61rcWkgMzE"}
	case 2:
		e.TraceID = fmt.Sprintf("a3ce929d%08x", i)
	}
	return e
}

func appendN(t testing.TB, w *wal.WAL, from, n int) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		var evs []auditevent.Event
		for j := i; j < min(i+100, n); j++ {
			evs = append(evs, eventN(from+j))
		}
		if _, err := w.Append(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	probe.Until(t, what, d, ok)
}

// startWithWAL starts a broker and opens a signed WAL with opt in a new
// directory: the start of most exporter tests.
func startWithWAL(t *testing.T, opt wal.Options) (*kafkatest.Cluster, string, *wal.WAL) {
	t.Helper()
	dir := t.TempDir()
	return kafkatest.Start(t), dir, openWAL(t, dir, opt)
}

func openWAL(t *testing.T, dir string, opt wal.Options) *wal.WAL {
	t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	opt.Dir, opt.Signer = dir, k
	w, err := wal.Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// logs collects Logf lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

// runUntil runs x until it exported through seq, then stops it.
func runUntil(t *testing.T, x *Exporter, seq uint64) {
	t.Helper()
	stop := run(t, x)
	waitFor(t, fmt.Sprintf("export through seq %d", seq), 20*time.Second, func() bool { return x.Exported() == seq })
	stop()
}

// run starts x in the background; the returned stop cancels it and waits.
func run(t *testing.T, x *Exporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && ctx.Err() == nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("exporter did not stop within 30s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newX(t *testing.T, dir string, k *kafkatest.Cluster, l *logs, w *wal.WAL) *Exporter {
	t.Helper()
	cfg := Config{Dir: dir, Brokers: []string{k.Addr()}, CreateTopics: true, Batch: 128, AckTimeout: 3 * time.Second, MaxBackoff: 500 * time.Millisecond}
	if l != nil {
		cfg.Logf = l.logf
	}
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w != nil {
		x.Follow(w.Durable, w.Changed)
	}
	return x
}

// consume reads partition 0 of topic from the start until it holds at least
// want records and nothing more arrives for 300ms (bounded by 30s).
func consume(t *testing.T, addr, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		wait := 2 * time.Second
		if len(out) >= want {
			wait = 300 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		if n == 0 && len(out) >= want {
			return out
		}
	}
	t.Fatalf("read %d records from %s, want ≥%d within 30s", len(out), topic, want)
	return nil
}

func header(r *kgo.Record, k string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

func seqOf(t *testing.T, r *kgo.Record) uint64 {
	t.Helper()
	v, ok := header(r, HeaderSeq)
	s, err := strconv.ParseUint(v, 10, 64)
	if !ok || err != nil {
		t.Fatalf("record at offset %d: header %s = %q", r.Offset, HeaderSeq, v)
	}
	return s
}

// dedupe is what a consumer does: keep the highest seq seen, skip anything
// at or below it. It fails on a gap.
func dedupe(t *testing.T, rs []*kgo.Record) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	var high uint64
	for _, r := range rs {
		s := seqOf(t, r)
		if s <= high {
			continue
		}
		if s != high+1 {
			t.Fatalf("gap downstream: seq %d follows %d (offset %d)", s, high, r.Offset)
		}
		out, high = append(out, r), s
	}
	return out
}

func TestExportInOrderWithHeadersAndCheckpoints(t *testing.T) {
	k, dir, w := startWithWAL(t, wal.Options{CheckpointEvery: 250})
	x := newX(t, dir, k, nil, w)
	appendN(t, w, 0, 1000)
	stop := run(t, x)
	waitFor(t, "export of 1000", 20*time.Second, func() bool { return x.Exported() == 1000 })

	if c, _ := ReadCursor(dir); c != 1000 {
		t.Fatalf("persisted cursor %d, want 1000", c)
	}
	if n := len(k.Kfake().PartitionInfos(DefaultTopic)); n != 1 {
		t.Fatalf("record topic created with %d partitions, want 1", n)
	}
	if ti := k.Kfake().TopicInfo(DefaultCheckpointTopic); ti == nil || ti.Configs["retention.ms"] == nil || *ti.Configs["retention.ms"] != "-1" {
		t.Fatalf("checkpoint topic %+v: want retention.ms=-1", ti)
	}
	rs := consume(t, k.Addr(), DefaultTopic, 1000)
	if len(rs) != 1000 {
		t.Fatalf("topic holds %d records, want exactly 1000 (no re-sends without an outage)", len(rs))
	}
	prev := ""
	for i, r := range rs {
		seq := uint64(i + 1)
		if r.Partition != 0 || r.Offset != int64(i) {
			t.Fatalf("record %d at partition %d offset %d, want 0/%d", i, r.Partition, r.Offset, i)
		}
		if s := seqOf(t, r); s != seq {
			t.Fatalf("offset %d holds seq %d, want %d (seq order)", i, s, seq)
		}
		e, err := wal.DecodeEvent(r.Value)
		if err != nil {
			t.Fatalf("seq %d: value is not a stored record: %v", seq, err)
		}
		if e.Seq != seq || e.PrevHash != prev {
			t.Fatalf("seq %d: payload seq %d prev_hash %.8s, want chain link %.8s", seq, e.Seq, e.PrevHash, prev)
		}
		prev = e.Hash
		if string(r.Key) != export.MsgID(seq, e.Hash) {
			t.Fatalf("seq %d: key %q, want dedupe id %q", seq, r.Key, export.MsgID(seq, e.Hash))
		}
		want := eventN(i)
		if id, _ := header(r, HeaderID); id != want.ID {
			t.Fatalf("seq %d: %s %q, want %q", seq, HeaderID, id, want.ID)
		}
		tp, hasTP := header(r, HeaderTraceparent)
		ts, hasTS := header(r, HeaderTracestate)
		switch i % 4 {
		case 0:
			if tp != "00-"+want.TraceID+"-"+e.Hash[:16]+"-00" || hasTS {
				t.Fatalf("seq %d: traceparent %q tracestate %v, want one built from trace_id and the hash", seq, tp, hasTS)
			}
		case 1:
			if tp != want.Headers["traceparent"] || ts != want.Headers["tracestate"] {
				t.Fatalf("seq %d: traceparent %q tracestate %q, want the captured ones", seq, tp, ts)
			}
		case 2:
			if tp != "00-0000000000000000"+want.TraceID+"-"+e.Hash[:16]+"-00" {
				t.Fatalf("seq %d: traceparent %q, want the B3 id padded to 32 hex", seq, tp)
			}
		case 3:
			if hasTP || hasTS {
				t.Fatalf("seq %d: trace headers on an event without a trace id", seq)
			}
		}
	}

	cps, _ := wal.ReadCheckpoints(dir)
	if len(cps) < 3 {
		t.Fatalf("%d checkpoints in the WAL, want ≥3 (every 250 of 1000, at commit boundaries)", len(cps))
	}
	covered := 0
	for _, c := range cps {
		if c.Seq <= 1000 {
			covered++
		}
	}
	waitFor(t, "checkpoints exported", 10*time.Second, func() bool { return x.CheckpointsExported() >= uint64(covered) })
	stop()
	crs := consume(t, k.Addr(), DefaultCheckpointTopic, covered)
	if len(crs) != covered {
		t.Fatalf("checkpoint topic holds %d, want %d", len(crs), covered)
	}
	for i, r := range crs {
		var c wal.Checkpoint
		if err := json.Unmarshal(r.Value, &c); err != nil {
			t.Fatal(err)
		}
		if c.Seq != cps[i].Seq || c.Hash != cps[i].Hash || c.Sig != cps[i].Sig {
			t.Fatalf("exported checkpoint %d = seq %d, want the WAL's seq %d", i, c.Seq, cps[i].Seq)
		}
		if s := seqOf(t, r); s != c.Seq {
			t.Fatalf("checkpoint header seq %d, body seq %d", s, c.Seq)
		}
	}
	if n, _ := cursorfile.Read(filepath.Join(dir, CheckpointCursorFile), cursorName, cursorFix); n != uint64(covered) {
		t.Fatalf("checkpoint cursor %d, want %d", n, covered)
	}
}

func TestResumeFromCursorAfterRestart(t *testing.T) {
	k, dir, w := startWithWAL(t, wal.Options{})
	appendN(t, w, 0, 500)
	runUntil(t, newX(t, dir, k, nil, w), 500)

	appendN(t, w, 500, 700) // the collector goes on; the exporter restarts later
	x2 := newX(t, dir, k, nil, w)
	if x2.Exported() != 500 {
		t.Fatalf("restarted exporter starts at cursor %d, want 500 (kafka.cursor)", x2.Exported())
	}
	runUntil(t, x2, 1200)
	rs := consume(t, k.Addr(), DefaultTopic, 1200)
	if len(rs) != 1200 {
		t.Fatalf("topic holds %d records, want 1200: a restart re-sent or skipped records", len(rs))
	}
	for i, r := range rs {
		if s := seqOf(t, r); s != uint64(i+1) {
			t.Fatalf("offset %d holds seq %d, want %d", i, s, i+1)
		}
	}
}

func TestBrokerOutageThenCatchUpLosesNothing(t *testing.T) {
	k, dir, w := startWithWAL(t, wal.Options{CheckpointEvery: 500})
	var l logs
	x := newX(t, dir, k, &l, w)
	stop := run(t, x)
	appendN(t, w, 0, 1000)
	waitFor(t, "export of 1000", 20*time.Second, func() bool { return x.Exported() == 1000 })

	k.Stop() // the broker goes away; ingest goes on
	appendN(t, w, 1000, 1500)
	waitFor(t, "the exporter to notice the outage", 30*time.Second, func() bool { return x.Failures() >= 2 })
	if x.Exported() != 1000 {
		t.Fatalf("cursor moved to %d while Kafka was down", x.Exported())
	}
	if !l.has("cursor at seq 1000; retry") {
		t.Fatalf("no outage log naming the cursor: %q", l.lines)
	}
	k.Restart()
	waitFor(t, "export to catch up to 2500", 60*time.Second, func() bool { return x.Exported() == 2500 })
	if !l.has("kafka acknowledges again") {
		t.Fatalf("no recovery log: %q", l.lines)
	}
	stop()
	rs := consume(t, k.Addr(), DefaultTopic, 2500)
	seen := map[uint64]int{}
	for _, r := range rs {
		seen[seqOf(t, r)]++
	}
	for s := uint64(1); s <= 2500; s++ {
		if seen[s] == 0 {
			t.Fatalf("seq %d never reached Kafka (acknowledged before the outage: %v)", s, s <= 1000)
		}
	}
	if got := dedupe(t, rs); len(got) != 2500 {
		t.Fatalf("%d records after de-duplication by seq, want 2500", len(got))
	}
	t.Logf("%d records in the topic for 2500 seqs (%d re-sent), %d failures", len(rs), len(rs)-2500, x.Failures())
}

func TestBrokerRefusingProduceThenRecovering(t *testing.T) {
	k, dir, w := startWithWAL(t, wal.Options{})
	x := newX(t, dir, k, nil, w)
	stop := run(t, x)
	appendN(t, w, 0, 300)
	waitFor(t, "export of 300", 20*time.Second, func() bool { return x.Exported() == 300 })

	// The broker is up but refuses every produce (a non-retriable error).
	h := k.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: DefaultTopic, Err: kerr.TopicAuthorizationFailed, Count: -1})
	appendN(t, w, 300, 300)
	waitFor(t, "refused produces to count as failures", 20*time.Second, func() bool { return x.Failures() >= 2 })
	if x.Exported() != 300 {
		t.Fatalf("cursor moved to %d while every produce was refused", x.Exported())
	}
	h.Remove()
	waitFor(t, "catch-up to 600", 30*time.Second, func() bool { return x.Exported() == 600 })
	stop()
	if got := dedupe(t, consume(t, k.Addr(), DefaultTopic, 600)); len(got) != 600 {
		t.Fatalf("%d distinct seqs downstream, want 600", len(got))
	}
}

// A crash after Kafka acknowledged records but before the cursor was saved
// re-sends them: the consumer sees each seq at least once, and the key and
// Mw-Audit-Seq let it drop the copies.
func TestResentRecordsAreDuplicateFreeBySeq(t *testing.T) {
	k, dir, w := startWithWAL(t, wal.Options{})
	appendN(t, w, 0, 1000)
	runUntil(t, newX(t, dir, k, nil, w), 1000)
	if err := os.WriteFile(filepath.Join(dir, CursorFile), []byte("600\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	runUntil(t, newX(t, dir, k, nil, w), 1000) // re-exports 601..1000

	rs := consume(t, k.Addr(), DefaultTopic, 1400)
	if len(rs) != 1400 {
		t.Fatalf("topic holds %d, want 1000 + 400 re-sent", len(rs))
	}
	keys := map[uint64]string{}
	for _, r := range rs {
		s := seqOf(t, r)
		if prev, ok := keys[s]; ok && prev != string(r.Key) {
			t.Fatalf("seq %d re-sent with key %q, first sent with %q: the dedupe key must be stable", s, r.Key, prev)
		}
		keys[s] = string(r.Key)
		if !strings.HasPrefix(string(r.Key), strconv.FormatUint(s, 10)+"-") {
			t.Fatalf("seq %d has key %q", s, r.Key)
		}
	}
	got := dedupe(t, rs)
	if len(got) != 1000 {
		t.Fatalf("%d records after de-duplication, want 1000", len(got))
	}
	for i, r := range got {
		if seqOf(t, r) != uint64(i+1) {
			t.Fatalf("de-duplicated stream out of order at %d", i)
		}
	}
}

func TestRetentionKeepsSegmentsNotYetInKafka(t *testing.T) {
	k := kafkatest.Start(t)
	k.Stop() // Kafka is down from the start
	dir := t.TempDir()
	x := newX(t, dir, k, nil, nil)
	jetstreamDone := func() uint64 { return math.MaxUint64 } // the other exporter is up to date
	w := openWAL(t, dir, wal.Options{SegmentSize: 8 << 10, RetainSegments: 2, CheckpointEvery: 50,
		ExportedSeq: wal.MinExported(jetstreamDone, x.Exported)})
	x.Follow(w.Durable, w.Changed)
	stop := run(t, x)
	appendN(t, w, 0, 600)
	segs, _ := wal.ListSegments(dir)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want ≥4 to make retention matter", len(segs))
	}
	if d := w.Stats().Deleted; d != 0 || segs[0].FirstSeq != 1 {
		t.Fatalf("retention deleted %d segment(s) (first now starts at %d) that Kafka never received", d, segs[0].FirstSeq)
	}
	k.Restart()
	waitFor(t, "export of 600", 30*time.Second, func() bool { return x.Exported() == 600 })
	appendN(t, w, 600, 200) // rotations run retention again
	waitFor(t, "export of 800", 30*time.Second, func() bool { return x.Exported() == 800 })
	if w.Stats().Deleted == 0 {
		t.Fatal("retention deleted nothing after Kafka caught up: the test proves nothing")
	}
	stop()
	if got := dedupe(t, consume(t, k.Addr(), DefaultTopic, 800)); len(got) != 800 {
		t.Fatalf("%d distinct seqs in Kafka, want 800 from seq 1", len(got))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Brokers: []string{"127.0.0.1:9092"}}, "Dir is required"},
		{Config{Dir: dir}, "no brokers"},
		{Config{Dir: dir, Brokers: []string{" ", ""}}, "no brokers"},
		{Config{Dir: dir, Brokers: []string{"kafka://127.0.0.1:9092"}}, "without a scheme"},
		{Config{Dir: dir, Brokers: []string{"127.0.0.1"}}, "host:port"},
		{Config{Dir: dir, Brokers: []string{"b:9092"}, Topic: "audit events"}, "letters, digits"},
		{Config{Dir: dir, Brokers: []string{"b:9092"}, Topic: "a", CheckpointTopic: "a"}, "different names"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, CursorFile), []byte("x\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Dir: dir, Brokers: []string{"b:9092"}}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt cursor: %v", err)
	}
}

func TestTraceContext(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	enc := func(e auditevent.Event) []byte {
		e.Seq, e.Hash = 1, hash
		b := e.AppendCanonical(nil)
		return append(b[:len(b)-1], []byte(`,"hash":"`+hash+`"}`)...)
	}
	tid := "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, c := range []struct {
		name   string
		e      auditevent.Event
		tp, ts string
	}{
		{"w3c id", auditevent.Event{TraceID: tid}, "00-" + tid + "-abababababababab-00", ""},
		{"upper-case id", auditevent.Event{TraceID: strings.ToUpper(tid)}, "00-" + tid + "-abababababababab-00", ""},
		{"b3 64-bit", auditevent.Event{TraceID: "a3ce929d0e0e4736"}, "00-0000000000000000a3ce929d0e0e4736-abababababababab-00", ""},
		{"captured", auditevent.Event{TraceID: tid, Headers: map[string]string{"traceparent": "00-" + tid + "-00f067aa0ba902b7-01", "tracestate": "a=b"}},
			"00-" + tid + "-00f067aa0ba902b7-01", "a=b"},
		{"captured for another trace", auditevent.Event{TraceID: tid, Headers: map[string]string{"traceparent": "00-11111111111111111111111111111111-00f067aa0ba902b7-01"}},
			"00-" + tid + "-abababababababab-00", ""},
		{"captured malformed", auditevent.Event{TraceID: tid, Headers: map[string]string{"traceparent": "00-" + tid + "-0000000000000000-01"}},
			"00-" + tid + "-abababababababab-00", ""},
		{"none", auditevent.Event{}, "", ""},
		{"all zero", auditevent.Event{TraceID: strings.Repeat("0", 32)}, "", ""},
		{"not hex", auditevent.Event{TraceID: strings.Repeat("z", 32)}, "", ""},
		{"trace_id look-alike in an earlier field", auditevent.Event{Subject: `x","trace_id":"` + tid, TraceID: ""}, "", ""},
	} {
		tp, ts := TraceContext(enc(c.e), hash)
		if tp != c.tp || ts != c.ts {
			t.Errorf("%s: got %q %q, want %q %q", c.name, tp, ts, c.tp, c.ts)
		}
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// TestUnansweredCheckpointProduceIsBounded: a broker that takes the
// checkpoint produce and never answers (as a broker that goes away in the
// middle of the request looks) costs the exporter one AckTimeout, not the
// client's own request timeouts: the session ends, is counted and logged,
// cancellation still stops the exporter, and everything arrives once the
// broker answers again. Before, ProduceSync waited on the unanswered
// request, which is how TestBrokerOutageThenCatchUpLosesNothing hung now
// and then (no failure counted for 30 s, the exporter deaf to cancel).
func TestUnansweredCheckpointProduceIsBounded(t *testing.T) {
	k, dir, w := startWithWAL(t, wal.Options{CheckpointEvery: 100})
	var l logs
	x := newX(t, dir, k, &l, w)
	x.cfg.AckTimeout = time.Second
	// Produce names topics by id in newer versions: create the topic first
	// to know it (the exporter finds it there).
	if err := k.Kfake().CreateTopic(DefaultCheckpointTopic, 1, nil); err != nil {
		t.Fatal(err)
	}
	id := k.Kfake().TopicInfo(DefaultCheckpointTopic).TopicID
	var mu sync.Mutex
	swallow := true
	k.Kfake().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.Kfake().KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if swallow && (tp.Topic == DefaultCheckpointTopic || tp.TopicID == id) {
				return nil, nil, true // taken, never answered
			}
		}
		return nil, nil, false
	})
	stop := run(t, x)
	appendN(t, w, 0, 300)
	start := time.Now()
	waitFor(t, "the unanswered checkpoint produce to end a session", 8*time.Second, func() bool { return x.Failures() > 0 })
	if !l.has("produce checkpoints to " + DefaultCheckpointTopic) {
		t.Fatalf("no log naming the checkpoint produce: %q", l.lines)
	}
	t.Logf("session abandoned %s after the records were appended (AckTimeout 1s)", time.Since(start).Round(time.Millisecond))
	mu.Lock()
	swallow = false
	mu.Unlock()
	waitFor(t, "records and checkpoints to catch up", 30*time.Second, func() bool {
		return x.Exported() == 300 && x.CheckpointsExported() >= 3
	})
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the exporter did not stop within 10s of cancel")
	}
}
