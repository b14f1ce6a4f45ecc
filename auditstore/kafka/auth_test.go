package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/meshwarden/meshwarden/auditstore/internal/kafkatest"
	"github.com/meshwarden/meshwarden/auditstore/wal"
)

// testPKI writes a CA, a broker certificate for 127.0.0.1 and a client
// certificate to dir, and returns the broker's TLS config (client
// certificates required) and the file paths.
func testPKI(t *testing.T, dir string) (server *tls.Config, ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test kafka ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, server bool) (tls.Certificate, []byte, []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalPKCS8PrivateKey(k)
		cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		kp := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
		c, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		return c, cp, kp
	}
	srv, _, _ := issue(2, true)
	_, cp, kp := issue(3, false)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	for p, b := range map[string][]byte{ca: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert: cp, key: kp} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{srv}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, ca, cert, key
}

// The exporter reaches a broker that requires TLS with a client certificate
// and SCRAM-SHA-512; without the certificate or with a wrong password it
// exports nothing and counts failures.
func TestTLSAndSCRAM(t *testing.T) {
	pki := t.TempDir()
	srvTLS, ca, cert, key := testPKI(t, pki)
	k := kafkatest.Start(t, kfake.TLS(srvTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "audit", "s3cret"))
	dir := t.TempDir()
	w := openWAL(t, dir, wal.Options{})
	appendN(t, w, 0, 200)

	exporter := func(tlsCA, tlsCert, tlsKey, pass string) *Exporter {
		t.Helper()
		tc, err := ClientTLS(tlsCA, tlsCert, tlsKey)
		if err != nil {
			t.Fatal(err)
		}
		mech, err := SASL("scram-sha-512", "audit", pass, true)
		if err != nil {
			t.Fatal(err)
		}
		x, err := New(Config{Dir: dir, Brokers: []string{k.Addr()}, CreateTopics: true, TLS: tc, SASL: mech, AckTimeout: 2 * time.Second, MaxBackoff: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		x.Follow(w.Durable, w.Changed)
		return x
	}
	for _, c := range []struct{ name, cert, key, pass string }{
		{"no client certificate", "", "", "s3cret"},
		{"wrong password", cert, key, "guess"},
	} {
		x := exporter(ca, c.cert, c.key, c.pass)
		stop := run(t, x)
		waitFor(t, c.name+": failures", 20*time.Second, func() bool { return x.Failures() >= 2 })
		stop()
		if x.Exported() != 0 {
			t.Fatalf("%s: exported up to seq %d", c.name, x.Exported())
		}
	}
	x := exporter(ca, cert, key, "s3cret")
	stop := run(t, x)
	waitFor(t, "export of 200 over TLS + SCRAM", 20*time.Second, func() bool { return x.Exported() == 200 })
	stop()

	tc, _ := ClientTLS(ca, cert, key)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.DialTLSConfig(tc), kgo.SASL(scram.Auth{User: "audit", Pass: "s3cret"}.AsSha512Mechanism()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{DefaultTopic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	deadline := time.Now().Add(20 * time.Second)
	for n < 200 && time.Now().Before(deadline) {
		ctx, cancel := contextWithTimeout(2 * time.Second)
		cl.PollFetches(ctx).EachRecord(func(*kgo.Record) { n++ })
		cancel()
	}
	if n != 200 {
		t.Fatalf("read %d records back over TLS + SCRAM, want 200", n)
	}
}

func TestAuthOptionErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{func() error { _, err := SASL("PLAIN", "u", "p", false); return err }(), "in clear"},
		{func() error { _, err := SASL("GSSAPI", "u", "p", true); return err }(), "not supported"},
		{func() error { _, err := SASL("SCRAM-SHA-256", "", "p", true); return err }(), "--kafka-sasl-user"},
		{func() error { _, err := ClientTLS("", "c.pem", ""); return err }(), "go together"},
		{func() error { _, err := ClientTLS(filepath.Join(t.TempDir(), "none.pem"), "", ""); return err }(), "--kafka-tls-ca"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", c.err, c.want)
		}
	}
	if _, err := SASL("scram-sha-256", "u", "p", false); err != nil {
		t.Errorf("SCRAM without TLS: %v (the password never crosses the wire)", err)
	}
}
