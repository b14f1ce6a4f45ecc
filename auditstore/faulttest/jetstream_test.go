package faulttest

import (
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/auditstore/internal/natstest"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

func TestJetStreamDownThenUpNothingMissing(t *testing.T) {
	ns := natstest.Start(t)
	e := newEnv(t)
	args := []string{"--nats", ns.URL(), "--segment-size", "131072"}
	p := e.start(t, args...)
	total := sendN(t, p, 40) // 2000
	probe.Until(t, "2000 records in JetStream", 30*time.Second, func() bool { return natstest.SubjectCount(ns.URL(), natstest.EventsSubject) == total })

	ns.Stop()                // JetStream outage
	total += sendN(t, p, 40) // the collector keeps acknowledging
	p.kill9(t)               // and even crashes during the outage
	p = e.start(t, args...)  // restarts; its exporter resumes from the persisted cursor
	total += sendN(t, p, 20) // 5000
	ns.Restart()
	probe.Until(t, "5000 records in JetStream", 60*time.Second, func() bool { return natstest.SubjectCount(ns.URL(), natstest.EventsSubject) == total })
	p.stop(t)

	natstest.WantEachSeqOnce(t, ns.URL(), natstest.EventsSubject, 5000)
	out, code := verifyCLI(t, e, e.dir)
	if code != 0 {
		t.Fatalf("verify:\n%s", out)
	}
	if c := natstest.SubjectCount(ns.URL(), "meshwarden.audit.checkpoints"); c < 1 {
		t.Fatalf("no signed checkpoint reached JetStream (%d)", c)
	}
}
