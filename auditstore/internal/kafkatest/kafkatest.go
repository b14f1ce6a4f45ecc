// Package kafkatest runs franz-go's kfake (an in-process Kafka cluster that
// speaks the real protocol) for tests: one broker on a loopback port, its
// state persisted in a test directory, so it can be stopped (an outage) and
// restarted on the same port with the records it had acknowledged.
package kafkatest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster is a restartable one-broker kfake cluster.
type Cluster struct {
	t     testing.TB
	dir   string
	port  int
	extra []kfake.Opt
	c     *kfake.Cluster
}

// Start runs a cluster for the life of t. extra options (TLS, SASL) are
// applied at every (re)start.
func Start(t testing.TB, extra ...kfake.Opt) *Cluster {
	t.Helper()
	k := &Cluster{t: t, dir: t.TempDir(), extra: extra}
	k.Restart()
	t.Cleanup(k.Stop)
	return k
}

// Addr is the broker's host:port (stable across restarts).
func (k *Cluster) Addr() string { return "127.0.0.1:" + strconv.Itoa(k.port) }

// Kfake is the running cluster (nil while stopped), for Control and Fault.
func (k *Cluster) Kfake() *kfake.Cluster { return k.c }

// Stop shuts the broker down; its state stays on disk. Safe to call twice.
func (k *Cluster) Stop() {
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

// Restart starts the broker again on the same port with the same state.
func (k *Cluster) Restart() {
	k.t.Helper()
	opts := append([]kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(k.dir), kfake.SyncWrites(), kfake.Ports(k.port)}, k.extra...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := kfake.NewCluster(opts...)
		if err == nil {
			k.c = c
			break
		}
		if time.Now().After(deadline) { // the old listener's port not yet free
			k.t.Fatalf("kfake: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, p, _ := net.SplitHostPort(k.c.ListenAddrs()[0])
	k.port, _ = strconv.Atoi(p)
}
