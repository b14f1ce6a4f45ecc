// Package faulttest runs the audit collector as a subprocess (the real audit
// CLI code, auditstore/cli, built in TestMain as auditstore/internal/auditbin:
// `meshwarden` with only the audit commands, so these tests do not depend on
// the rest of the binary compiling) and breaks things: kill -9 under
// load, tampered segment files, a JetStream outage. Every test asserts counts.
package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

var bin string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "meshwarden-faulttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(tmp, "meshwarden")
	build := exec.Command("go", "build", "-o", bin, "github.com/meshwarden/meshwarden/auditstore/internal/auditbin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faulttest: building the audit binary:", err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// env is one collector's files: WAL dir, keys, token.
type env struct {
	dir, key, pub, token string
}

func newEnv(t *testing.T) env {
	t.Helper()
	d := t.TempDir()
	e := env{dir: filepath.Join(d, "wal"), key: filepath.Join(d, "audit.key"), pub: filepath.Join(d, "audit.pub"), token: filepath.Join(d, "token")}
	if out, err := exec.Command(bin, "audit", "keygen", "--out", e.key, "--pub", e.pub).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	if err := os.WriteFile(e.token, []byte("fault-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

type proc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuf
	exited chan error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func (e env) start(t *testing.T, extra ...string) *proc {
	t.Helper()
	addrFile := filepath.Join(filepath.Dir(e.dir), "addr")
	os.Remove(addrFile)
	args := append([]string{"audit", "collector", "--dir", e.dir, "--key", e.key, "--token-file", e.token,
		"--listen", "127.0.0.1:0", "--addr-file", addrFile}, extra...)
	p := &proc{cmd: exec.Command(bin, args...), stderr: &syncBuf{}, exited: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.exited })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			p.addr = string(b)
			return p
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("collector exited: %v\n%s", err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector did not start:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-p.exited
	p.exited <- err
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Fatalf("collector did not stop cleanly: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("collector ignored SIGTERM")
	}
}

var idSeq atomic.Uint64

func batch(n int) ([]byte, []string) {
	b := auditevent.Batch{Sender: "faulttest"}
	ids := make([]string, n)
	for i := range n {
		k := idSeq.Add(1)
		ids[i] = fmt.Sprintf("%032x-%d-intent", k, k)
		b.Events = append(b.Events, auditevent.Event{ID: ids[i], Phase: auditevent.PhaseIntent, Level: auditevent.LevelCritical,
			OpType: "FUND_TRANSFER", Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42",
			Timestamp: time.Now().UnixNano(), TraceID: fmt.Sprintf("%032x", k), Method: "POST", Path: "/v1/transfers"})
	}
	out, _ := json.Marshal(b)
	return out, ids
}

var client = &http.Client{Timeout: 5 * time.Second}

// send posts one batch; it returns the ack and true only on a 200.
// sendN sends batches of 50 events to p and returns how many it sent,
// failing t on the first batch not acknowledged.
func sendN(t *testing.T, p *proc, batches int) int {
	t.Helper()
	n := 0
	for range batches {
		body, ids := batch(50)
		if _, ok := send(p.addr, body); !ok {
			t.Fatalf("send failed:\n%s", p.stderr.String())
		}
		n += len(ids)
	}
	return n
}

func send(addr string, body []byte) (auditevent.Ack, bool) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+auditevent.IngestPath, bytes.NewReader(body))
	req.Header.Set(auditevent.TokenHeader, "fault-token")
	resp, err := client.Do(req)
	if err != nil {
		return auditevent.Ack{}, false
	}
	defer resp.Body.Close()
	var ack auditevent.Ack
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&ack) != nil {
		return auditevent.Ack{}, false
	}
	return ack, true
}

// acked maps every acknowledged event id to the seq the collector gave it.
type acked struct {
	mu  sync.Mutex
	ids map[string]uint64
}

func (a *acked) add(ack auditevent.Ack, ids []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, id := range ids {
		a.ids[id] = ack.FirstSeq + uint64(i)
	}
}

func (a *acked) len() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.ids) }

// lostIn counts the acknowledged records that got (stored id → seq) lacks
// or holds at another seq, reporting the first four on t.
func (a *acked) lostIn(t *testing.T, got map[string]uint64) int {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	lost := 0
	for id, seq := range a.ids {
		if s, ok := got[id]; !ok || s != seq {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged record %s (seq %d) is not stored at that seq (found seq %d, present %v)", id, seq, s, ok)
			}
		}
	}
	return lost
}

// load runs senders against addr until stop is closed or the collector dies.
func load(addr string, senders, per int, a *acked, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				body, ids := batch(per)
				ack, ok := send(addr, body)
				if !ok {
					return // collector gone: these ids were never acknowledged
				}
				if ack.Accepted != len(ids) || ack.LastSeq-ack.FirstSeq+1 != uint64(len(ids)) {
					panic(fmt.Sprintf("bad ack %+v for %d events", ack, len(ids)))
				}
				a.add(ack, ids)
			}
		})
	}
	return &wg
}

// stored reads every record in dir: id -> seq.
func stored(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	f, _ := wal.NewFollower(dir, 1)
	defer f.Close()
	out := map[string]uint64{}
	for {
		_, e, err := f.Next(math.MaxUint64)
		if wal.IsWait(err) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[e.ID] = e.Seq
	}
}

func verifyCLI(t *testing.T, e env, dir string) (string, int) {
	t.Helper()
	return run(t, "audit", "verify", "--dir", dir, "--pubkey", e.pub)
}

func TestKill9UnderLoadLosesNoAcknowledgedRecord(t *testing.T) {
	e := newEnv(t)
	a := &acked{ids: map[string]uint64{}}
	const rounds = 3
	for round := range rounds {
		p := e.start(t, "--segment-size", "262144", "--checkpoint-every", "500")
		if round > 0 && !strings.Contains(p.stderr.String(), "head_seq=") {
			t.Fatalf("round %d: no recovery line:\n%s", round, p.stderr.String())
		}
		before := a.len()
		stop := make(chan struct{})
		wg := load(p.addr, 16, 20, a, stop)
		deadline := time.Now().Add(20 * time.Second)
		for a.len() < before+3000 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		p.kill9(t) // mid-load: senders are in flight
		close(stop)
		wg.Wait()
		if a.len() < before+3000 {
			t.Fatalf("round %d: only %d acks before kill", round, a.len()-before)
		}
	}
	// Restart once more: recovery truncates any torn tail, the chain goes on.
	p := e.start(t)
	body, ids := batch(5)
	ack, ok := send(p.addr, body)
	if !ok {
		t.Fatalf("collector did not accept after recovery:\n%s", p.stderr.String())
	}
	a.add(ack, ids)
	p.stop(t)

	got := stored(t, e.dir)
	if missing := a.lostIn(t, got); missing > 0 {
		t.Fatalf("%d of %d acknowledged records lost across %d kill -9", missing, len(a.ids), rounds)
	}
	out, code := verifyCLI(t, e, e.dir)
	if code != 0 || !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify after kill -9 (exit %d):\n%s", code, out)
	}
	t.Logf("%d acknowledged, %d stored (stored-but-unacked: %d), 0 lost; verify: %s", len(a.ids), len(got), len(got)-len(a.ids), strings.SplitN(out, "\n", 2)[0])
}

func TestVerifyCLICatchesTamperedSegments(t *testing.T) {
	e := newEnv(t)
	p := e.start(t, "--segment-size", "65536", "--checkpoint-every", "100")
	for range 40 {
		body, _ := batch(25)
		if _, ok := send(p.addr, body); !ok {
			t.Fatalf("send failed:\n%s", p.stderr.String())
		}
	}
	p.stop(t)
	if out, code := verifyCLI(t, e, e.dir); code != 0 {
		t.Fatalf("intact trail fails verify:\n%s", out)
	}
	segs, _ := wal.ListSegments(e.dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want ≥3", len(segs))
	}
	type rec struct {
		off int64
		b   []byte
		e   auditevent.Event
	}
	read := func(path string) []rec {
		r, _ := wal.OpenSegment(path, 0)
		defer r.Close()
		var out []rec
		for {
			x, err := r.Next()
			if err != nil {
				return out
			}
			ev, _ := wal.DecodeEvent(x.Payload)
			out = append(out, rec{x.Offset, append([]byte(nil), make([]byte, 0)...), ev})
			raw, _ := os.ReadFile(path)
			out[len(out)-1].b = append([]byte(nil), raw[x.Offset:x.Offset+x.Size]...)
		}
	}
	seg := segs[1]
	recs := read(seg.Path)
	mid := len(recs) / 2
	for _, tc := range []struct {
		name   string
		tamper func(dir string)
		seq    uint64
		off    int64
		seg    string
		kind   string
	}{
		{"byte flip", func(dir string) {
			path := filepath.Join(dir, seg.Name)
			b, _ := os.ReadFile(path)
			b[recs[mid].off+40] ^= 0x20
			os.WriteFile(path, b, 0o640)
		}, recs[mid].e.Seq, recs[mid].off, seg.Name, "corrupt"},
		{"record deletion", func(dir string) {
			var b []byte
			for i, r := range recs {
				if i != mid {
					b = append(b, r.b...)
				}
			}
			os.WriteFile(filepath.Join(dir, seg.Name), b, 0o640)
		}, recs[mid+1].e.Seq, recs[mid].off, seg.Name, "out-of-sequence"},
		{"reordering", func(dir string) {
			var b []byte
			for i := range recs {
				j := i
				if i == mid {
					j = mid + 1
				} else if i == mid+1 {
					j = mid
				}
				b = append(b, recs[j].b...)
			}
			os.WriteFile(filepath.Join(dir, seg.Name), b, 0o640)
		}, recs[mid+1].e.Seq, recs[mid].off, seg.Name, "out-of-sequence"},
		{"truncation", func(dir string) {
			last := segs[len(segs)-1]
			lr := read(last.Path)
			os.Truncate(filepath.Join(dir, last.Name), lr[len(lr)-3].off)
		}, 0, -1, segs[len(segs)-1].Name, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "wal")
			if err := os.CopyFS(dir, os.DirFS(e.dir)); err != nil {
				t.Fatal(err)
			}
			tc.tamper(dir)
			out, code := verifyCLI(t, e, dir)
			if code == 0 {
				t.Fatalf("verify passed a tampered trail:\n%s", out)
			}
			want := fmt.Sprintf("first bad record: segment %s, offset %d, seq %d", tc.seg, tc.off, tc.seq)
			if tc.kind == "truncated" {
				lr := read(segs[len(segs)-1].Path)
				want = fmt.Sprintf("first bad record: segment %s, offset %d, seq %d", tc.seg, lr[len(lr)-3].off, lr[len(lr)-3].e.Seq)
			}
			if !strings.Contains(out, "FAIL  "+tc.kind) || !strings.Contains(out, want) {
				t.Fatalf("verify output does not name the first bad record (%q, kind %s):\n%s", want, tc.kind, out)
			}
			if tc.kind != "corrupt" && tc.kind != "truncated" {
				var id string
				for _, r := range recs {
					if r.e.Seq == tc.seq {
						id = r.e.ID
					}
				}
				if !strings.Contains(out, fmt.Sprintf("id %q", id)) {
					t.Fatalf("verify output does not name id %s:\n%s", id, out)
				}
			}
		})
	}
}

func TestQueryAndTailCLI(t *testing.T) {
	e := newEnv(t)
	p := e.start(t)
	body, ids := batch(7)
	if _, ok := send(p.addr, body); !ok {
		t.Fatal("send failed")
	}
	p.stop(t)
	trace := strings.SplitN(ids[3], "-", 2)[0]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "--count"}, "7"},
		{[]string{"query", "--count", "--op-type", "FUND_TRANSFER"}, "7"},
		{[]string{"query", "--count", "--op-type", "fund_transfer"}, "7"},
		{[]string{"query", "--count", "--op-type", "OTHER"}, "0"},
		{[]string{"query", "--count", "--from", time.Now().UTC().Format(time.DateOnly)}, "7"},
		{[]string{"query", "--count", "--from", "1h"}, "7"},
		{[]string{"query", "--count", "--to", "1h"}, "0"},
		{[]string{"query", "--count", "--trace-id", trace}, "1"},
		{[]string{"query", "--count", "--from", time.Now().Add(time.Hour).Format(time.RFC3339)}, "0"},
		{[]string{"query", "--count", "--to", time.Now().Add(time.Hour).Format(time.RFC3339), "--subject", "spiffe://dc1/ns/default/svc/web"}, "7"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := exec.Command(bin, append([]string{"audit"}, append(tc.args, "--dir", e.dir)...)...).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != tc.want {
				t.Fatalf("got %q (%v), want %s", out, err, tc.want)
			}
		})
	}
	out, err := exec.Command(bin, "audit", "tail", "--dir", e.dir, "-n", "2").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], ids[6]) || !strings.Contains(lines[0], ids[5]) ||
		!strings.Contains(lines[1], " FUND_TRANSFER intent subject=spiffe://dc1/ns/default/svc/web POST ") || strings.HasPrefix(lines[1], "{") {
		t.Fatalf("tail -n 2 printed (want one readable line per record):\n%s", out)
	}
	out, err = exec.Command(bin, "audit", "tail", "--dir", e.dir, "-n", "1", "-o", "json").Output()
	var rec struct{ ID string }
	if err != nil || json.Unmarshal(out, &rec) != nil || rec.ID != ids[6] {
		t.Fatalf("tail -o json printed %q (%v), want the stored record of %s", out, err, ids[6])
	}
	if out, err := exec.Command(bin, "audit", "query", "--dir", e.dir, "--from", "yesterday").CombinedOutput(); err == nil || !strings.Contains(string(out), "a date (2026-11-25)") {
		t.Fatalf("query --from yesterday: %q %v, want an error naming the accepted forms", out, err)
	}
	// tail -f prints the earlier records, then those stored after it started
	// (whichever side of its first scan they land on, each exactly once).
	p = e.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tf := exec.CommandContext(ctx, bin, "audit", "tail", "--dir", e.dir, "-n", "100", "-f")
	var tout syncBuf
	tf.Stdout = &tout
	if err := tf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { tf.Process.Kill(); tf.Wait() }()
	body, ids = batch(3)
	if _, ok := send(p.addr, body); !ok {
		t.Fatal("send failed")
	}
	for !strings.Contains(tout.String(), ids[2]) {
		if ctx.Err() != nil {
			t.Fatalf("tail -f did not print the new record; got:\n%s", tout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(tout.String(), "\n"); n != 10 {
		t.Fatalf("tail -f -n 100 printed %d lines, want 7 old + 3 new", n)
	}
}

func TestGracefulStopUnderLoadAcksAndSignsEverything(t *testing.T) {
	e := newEnv(t)
	p := e.start(t, "--checkpoint-every", "1000000", "--checkpoint-interval", "1h")
	a := &acked{ids: map[string]uint64{}}
	stop := make(chan struct{})
	wg := load(p.addr, 16, 20, a, stop)
	deadline := time.Now().Add(20 * time.Second)
	for a.len() < 2000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.stop(t) // SIGTERM mid-load: exit 0 asserted by stop
	close(stop)
	wg.Wait()
	got := stored(t, e.dir)
	if lost := a.lostIn(t, got); lost > 0 {
		t.Fatalf("%d of %d acknowledged records missing after a graceful stop", lost, a.len())
	}
	cps, err := wal.ReadCheckpoints(e.dir)
	if err != nil || len(cps) == 0 {
		t.Fatalf("no checkpoint after a graceful stop: %v", err)
	}
	if last := cps[len(cps)-1].Seq; last != uint64(len(got)) {
		t.Fatalf("final checkpoint at seq %d, want the head %d (a graceful stop signs everything it stored)", last, len(got))
	}
	out, code := verifyCLI(t, e, e.dir)
	if code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("verify after graceful stop (exit %d):\n%s", code, out)
	}
	t.Logf("%d acknowledged, %d stored, final checkpoint at %d", len(a.ids), len(got), cps[len(cps)-1].Seq)
}
