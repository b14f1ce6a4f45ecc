// Package natstest runs an in-process nats-server with JetStream for tests,
// on a loopback port, with its store in a test directory, and can stop and
// restart it on the same port and store (an outage).
package natstest

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a restartable JetStream server.
type Server struct {
	t     testing.TB
	store string
	port  int
	ns    *server.Server
}

// Start runs a JetStream server for the life of t.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, store: t.TempDir(), port: -1}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URL is the client URL (stable across restarts).
func (s *Server) URL() string { return "nats://127.0.0.1:" + itoa(s.port) }

// Stop shuts the server down (an outage). Safe to call twice.
func (s *Server) Stop() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

// Restart starts the server again on the same port with the same store.
func (s *Server) Restart() {
	s.t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: s.port, JetStream: true, StoreDir: s.store, NoLog: true, NoSigs: true}
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.ns, err = server.NewServer(opts)
		if err == nil {
			go s.ns.Start()
			if s.ns.ReadyForConnections(10 * time.Second) {
				break
			}
			s.ns.Shutdown()
			err = errNotReady
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.port = s.ns.Addr().(*net.TCPAddr).Port
}

var errNotReady = errors.New("not ready for connections within 10s")

func itoa(i int) string { return strconv.Itoa(i) }
