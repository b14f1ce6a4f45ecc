package faulttest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/auditstore/witness"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

// run runs the audit binary and returns its combined output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// witnessHead is the highest checkpoint seq the witness holds (0 if none).
func witnessHead(t *testing.T, url string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cps, err := witness.Fetch(ctx, witness.Config{URL: url})
	if err != nil {
		return 0
	}
	var h uint64
	for _, c := range cps {
		h = max(h, c.Seq)
	}
	return h
}

func sendBatches(t *testing.T, p *proc, batches, per int) uint64 {
	t.Helper()
	var last uint64
	for range batches {
		body, _ := batch(per)
		ack, ok := send(p.addr, body)
		if !ok {
			t.Fatalf("send failed:\n%s", p.stderr.String())
		}
		last = ack.LastSeq
	}
	return last
}

func TestVerifyCLIFailsClosed(t *testing.T) {
	e := newEnv(t)
	p := e.start(t, "--segment-size", "65536")
	sendBatches(t, p, 40, 25) // 1000 records, several segments
	p.stop(t)
	if out, code := verifyCLI(t, e, e.dir); code != 0 {
		t.Fatalf("intact trail (exit %d):\n%s", code, out)
	}
	copyDir := func(t *testing.T) string {
		t.Helper()
		d := filepath.Join(t.TempDir(), "copy")
		if out, err := exec.Command("cp", "-a", e.dir, d).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		return d
	}
	t.Run("checkpoints deleted", func(t *testing.T) {
		d := copyDir(t)
		os.Remove(filepath.Join(d, wal.CheckpointFile))
		out, code := verifyCLI(t, e, d)
		if code != 1 || !strings.Contains(out, "FAIL  unsigned") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		out, code = run(t, "audit", "verify", "--dir", d, "--pubkey", e.pub, "--allow-unsigned-tail")
		if code != 0 || !strings.Contains(out, "warning: no signed checkpoint") {
			t.Fatalf("--allow-unsigned-tail: exit %d:\n%s", code, out)
		}
	})
	t.Run("first segment deleted", func(t *testing.T) {
		d := copyDir(t)
		segs, _ := wal.ListSegments(d)
		os.Remove(segs[0].Path)
		out, code := verifyCLI(t, e, d)
		if code != 1 || !strings.Contains(out, "FAIL  unanchored") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

func TestWitnessCLIAndProofs(t *testing.T) {
	ns := natstest.Start(t)
	e := newEnv(t)
	p := e.start(t, "--nats", ns.URL(), "--segment-size", "65536", "--checkpoint-interval", "200ms")
	head := sendBatches(t, p, 40, 25)
	probe.Until(t, "the witness to hold the head", 30*time.Second, func() bool { return witnessHead(t, ns.URL()) == head })
	p.stop(t)

	out, code := run(t, "audit", "verify", "--dir", e.dir, "--pubkey", e.pub, "--witness", ns.URL())
	if code != 0 || !strings.Contains(out, "the witness "+ns.URL()+" agrees up to seq 1000") {
		t.Fatalf("verify --witness (exit %d):\n%s", code, out)
	}

	t.Run("inclusion and consistency proofs", func(t *testing.T) {
		pf := filepath.Join(t.TempDir(), "proof.json")
		out, code := run(t, "audit", "prove", "--dir", e.dir, "--seq", "437")
		if code != 0 {
			t.Fatalf("prove: %s", out)
		}
		os.WriteFile(pf, []byte(out), 0o644)
		if out, code := run(t, "audit", "verify-proof", "--pubkey", e.pub, pf); code != 0 || !strings.Contains(out, "OK    record 437 is in the signed tree of 1000 records") {
			t.Fatalf("verify-proof (exit %d): %s", code, out)
		}
		os.WriteFile(pf, []byte(strings.Replace(out, "account/42", "account/43", 1)), 0o644)
		if out, code := run(t, "audit", "verify-proof", "--pubkey", e.pub, pf); code != 1 {
			t.Fatalf("altered record verified (exit %d): %s", code, out)
		}
		cps, _ := wal.ReadCheckpoints(e.dir)
		from := cps[0].Seq
		out, code = run(t, "audit", "prove", "--dir", e.dir, "--from", itoa(from), "--to", "1000")
		if code != 0 {
			t.Fatalf("prove consistency: %s", out)
		}
		os.WriteFile(pf, []byte(out), 0o644)
		if out, code := run(t, "audit", "verify-proof", "--pubkey", e.pub, pf); code != 0 || !strings.Contains(out, "extends the signed tree of "+itoa(from)) {
			t.Fatalf("verify-proof consistency (exit %d): %s", code, out)
		}
	})

	t.Run("last segment and its checkpoints deleted", func(t *testing.T) {
		d := cutLastSegment(t, e.dir)
		if out, code := verifyCLI(t, e, d); code != 0 || !strings.Contains(out, "needs witness: no witness checked") {
			t.Fatalf("without a witness the cut is invisible, and the output must say so (exit %d):\n%s", code, out)
		}
		out, code := run(t, "audit", "verify", "--dir", d, "--pubkey", e.pub, "--witness", ns.URL())
		if code != 1 || !strings.Contains(out, "FAIL  truncated") || !strings.Contains(out, "holds head") {
			t.Fatalf("verify --witness (exit %d):\n%s", code, out)
		}
	})

	t.Run("witness unreachable", func(t *testing.T) {
		ns.Stop()
		out, code := run(t, "audit", "verify", "--dir", e.dir, "--pubkey", e.pub, "--witness", ns.URL(), "--witness-timeout", "3s")
		if code != 1 || !strings.Contains(out, "FAIL  witness") {
			t.Fatalf("unreachable witness did not fail (exit %d):\n%s", code, out)
		}
		out, code = run(t, "audit", "verify", "--dir", e.dir, "--pubkey", e.pub, "--witness", ns.URL(), "--witness-timeout", "3s", "--skip-unreachable-witness")
		if code != 0 || !strings.Contains(out, "witness NOT checked") {
			t.Fatalf("--skip-unreachable-witness (exit %d):\n%s", code, out)
		}
	})
}

func TestKill9WhilePublishingToTheWitness(t *testing.T) {
	ns := natstest.Start(t)
	e := newEnv(t)
	args := []string{"--nats", ns.URL(), "--segment-size", "262144", "--checkpoint-every", "500"}
	a := &acked{ids: map[string]uint64{}}
	for round := range 3 {
		p := e.start(t, args...)
		before := a.len()
		stop := make(chan struct{})
		wg := load(p.addr, 8, 20, a, stop)
		probe.Until(t, "acks under load", 30*time.Second, func() bool { return a.len() >= before+2000 })
		// The exporter is publishing records and checkpoints right now.
		p.kill9(t)
		close(stop)
		wg.Wait()
		_ = round
	}
	p := e.start(t, args...)
	head := sendBatches(t, p, 1, 5)
	probe.Until(t, "the witness to catch up with the head", 60*time.Second, func() bool { return witnessHead(t, ns.URL()) == head })
	p.stop(t)
	got := stored(t, e.dir)
	if lost := a.lostIn(t, got); lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost across kill -9 with the witness on", lost, len(a.ids))
	}
	out, code := run(t, "audit", "verify", "--dir", e.dir, "--pubkey", e.pub, "--witness", ns.URL())
	if code != 0 || !strings.Contains(out, "agrees up to seq "+itoa(head)) {
		t.Fatalf("verify --witness after kill -9 (exit %d):\n%s", code, out)
	}
	t.Logf("%d acknowledged, 0 lost, witness at seq %d", len(a.ids), head)
}

// cutLastSegment copies dir and deletes, in the copy, the newest segment
// together with every checkpoint that covers it: a truncation only a
// witness can see. It returns the copy.
func cutLastSegment(t *testing.T, dir string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", dir, d).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	segs, _ := wal.ListSegments(d)
	if len(segs) < 2 {
		t.Fatalf("want several segments, have %d", len(segs))
	}
	last := segs[len(segs)-1]
	os.Remove(last.Path)
	cps, _ := wal.ReadCheckpoints(d)
	var keep []byte
	for _, c := range cps {
		if c.Seq < last.FirstSeq {
			line, _ := json.Marshal(c)
			keep = append(append(keep, line...), '\n')
		}
	}
	os.WriteFile(filepath.Join(d, wal.CheckpointFile), keep, 0o640)
	return d
}

// TestCheckpointsOnlyWitness: with --nats-checkpoints-only the witness holds
// the signed checkpoints and no record, and still catches a truncation.
func TestCheckpointsOnlyWitness(t *testing.T) {
	if out, code := run(t, "audit", "collector", "--dir", t.TempDir(), "--key", "k", "--nats-checkpoints-only"); code != 2 || !strings.Contains(out, "--nats-checkpoints-only needs --nats") {
		t.Fatalf("flag without --nats accepted (exit %d):\n%s", code, out)
	}
	ns := natstest.Start(t)
	e := newEnv(t)
	p := e.start(t, "--nats", ns.URL(), "--nats-checkpoints-only", "--segment-size", "65536", "--checkpoint-interval", "200ms")
	head := sendBatches(t, p, 40, 25)
	probe.Until(t, "the witness to hold the head", 30*time.Second, func() bool { return witnessHead(t, ns.URL()) == head })
	p.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, "MESHWARDEN_AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["meshwarden.audit.events"]; n != 0 {
		t.Fatalf("checkpoints-only published %d records", n)
	}
	if n := info.State.Subjects["meshwarden.audit.checkpoints"]; n == 0 {
		t.Fatalf("no checkpoint published: %v", info.State.Subjects)
	}

	if out, code := run(t, "audit", "verify", "--dir", e.dir, "--pubkey", e.pub, "--witness", ns.URL()); code != 0 || !strings.Contains(out, "agrees up to seq "+itoa(head)) {
		t.Fatalf("verify --witness (exit %d):\n%s", code, out)
	}
	d := cutLastSegment(t, e.dir)
	if out, code := run(t, "audit", "verify", "--dir", d, "--pubkey", e.pub, "--witness", ns.URL()); code != 1 || !strings.Contains(out, "FAIL  truncated") {
		t.Fatalf("truncation not caught by the checkpoints-only witness (exit %d):\n%s", code, out)
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
