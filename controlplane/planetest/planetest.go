// Package planetest serves a control plane inside a test: its ADS on a
// loopback port and its watch loop, both stopped when the test ends. Only
// tests import it.
package planetest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
)

// Plane is what a test serves: a controlplane.Server. (An interface, so that
// the plane's own tests can use this package without an import cycle.)
type Plane interface {
	Register(*grpc.Server)
	Run(context.Context) error
}

// Serve serves p's ADS (plaintext, no authentication: give the plane
// InsecureNoAuth) on a free loopback port and runs p until tb ends. It returns
// the listener and the gRPC server; stop the server to simulate an outage.
func Serve(tb testing.TB, p Plane) (net.Listener, *grpc.Server) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer()
	p.Register(g)
	go func() { _ = g.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	tb.Cleanup(func() { g.Stop(); cancel(); <-done })
	return lis, g
}
