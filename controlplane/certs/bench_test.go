package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
)

func benchManager(b *testing.B) (*Manager, *FileCA) {
	b.Helper()
	fca := newTestCA(b, "bench-ca", 0).FileCA
	m := runManager(b, Options{Issuer: fca})
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []string{"web", "gateway"} {
		if _, err := m.Wait(wctx, n); err != nil {
			b.Fatal(err)
		}
	}
	return m, fca
}

// handshake runs one mTLS handshake over an in-memory pipe. The server
// config must have session tickets disabled (a synchronous pipe would block
// on them); the raw pipe is closed, skipping close_notify.
func handshake(b *testing.B, server, client *tls.Config) {
	c1, c2 := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- tls.Server(c1, server).Handshake()
		c1.Close()
	}()
	if err := tls.Client(c2, client).Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	c2.Close()
}

// BenchmarkHandshake compares an mTLS handshake with static tls.Configs
// (certificates and pools frozen at start) to one with the manager's live
// configs (certificate looked up and peer verified against the bundle of
// the moment), side by side.
func BenchmarkHandshake(b *testing.B) {
	m, _ := benchManager(b)
	web, gw := m.Certificate("web"), m.Certificate("gateway")
	pool := x509.NewCertPool()
	for _, r := range m.Roots() {
		pool.AddCert(r)
	}
	static := func() (*tls.Config, *tls.Config) {
		return &tls.Config{Certificates: []tls.Certificate{*web.TLS()}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12, SessionTicketsDisabled: true},
			&tls.Config{Certificates: []tls.Certificate{*gw.TLS()}, RootCAs: pool, ServerName: "ignored", InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
				VerifyConnection: func(cs tls.ConnectionState) error {
					_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
					return err
				}}
	}
	b.Run("static", func(b *testing.B) {
		s, c := static()
		b.ReportAllocs()
		for b.Loop() {
			handshake(b, s, c)
		}
	})
	b.Run("live", func(b *testing.B) {
		s := m.ServerTLSConfig("web", AllowSPIFFE(gw.SPIFFEID))
		s.SessionTicketsDisabled = true
		c := m.ClientTLSConfig("gateway", AllowSPIFFE(web.SPIFFEID))
		b.ReportAllocs()
		for b.Loop() {
			handshake(b, s, c)
		}
	})
}

// BenchmarkGetCertificate is the per-handshake lookup of the live leaf.
func BenchmarkGetCertificate(b *testing.B) {
	m, _ := benchManager(b)
	get := m.GetCertificate("web")
	hello := &tls.ClientHelloInfo{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := get(hello); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSecrets builds one node's SDS secrets (leaf and roots).
func BenchmarkSecrets(b *testing.B) {
	m, _ := benchManager(b)
	node := xdsnode.Info{ID: "web-1", Cluster: "web", Service: "web"}
	b.ReportAllocs()
	for b.Loop() {
		if s, err := m.Secrets(node); err != nil || len(s) != 2 {
			b.Fatalf("secrets = %d, %v", len(s), err)
		}
	}
}

// BenchmarkFileCAIssue is the cost of one leaf (P-256 key + signature).
func BenchmarkFileCAIssue(b *testing.B) {
	_, fca := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fca.Issue(ctx, "web"); err != nil {
			b.Fatal(err)
		}
	}
}
