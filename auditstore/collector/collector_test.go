package collector

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

func batchJSON(n, from int) []byte {
	b := auditevent.Batch{Sender: "test"}
	for i := range n {
		b.Events = append(b.Events, auditevent.Event{ID: fmt.Sprintf("t%d-1-intent", from+i), Phase: auditevent.PhaseIntent,
			OpType: "FUND_TRANSFER", Timestamp: time.Now().UnixNano(), Seq: 999, Hash: "forged"})
	}
	out, _ := json.Marshal(b)
	return out
}

type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPool *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{ca, k, pool}
}

func (p *pki) leaf(t *testing.T, spiffe string, server bool) tls.Certificate {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if spiffe != "" {
		u, _ := url.Parse(spiffe)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func start(t *testing.T, cfg Config) (string, *wal.WAL) {
	t.Helper()
	w, err := wal.Open(context.Background(), wal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg.WAL = w
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		w.Close()
	})
	return ln.Addr().String(), w
}

func post(t *testing.T, c *http.Client, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set(auditevent.TokenHeader, token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// metricsText returns the body of the collector's /metrics at url.
func metricsText(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	_, b := probe.GetWith(t, c, url)
	return string(b)
}

func TestTokenAuthAndAck(t *testing.T) {
	addr, w := start(t, Config{Tokens: []string{"s3cret"}, MaxBodyBytes: 64 << 10})
	u := "http://" + addr + auditevent.IngestPath
	for _, tc := range []struct {
		name  string
		token string
		body  []byte
		code  int
	}{
		{"no token", "", batchJSON(1, 0), http.StatusUnauthorized},
		{"wrong token", "nope", batchJSON(1, 0), http.StatusUnauthorized},
		{"not json", "s3cret", []byte("{"), http.StatusBadRequest},
		{"invalid event", "s3cret", []byte(`{"events":[{"id":"x","phase":"intent"}]}`), http.StatusBadRequest},
		// A member given twice could be read differently by two parsers.
		{"member twice", "s3cret", []byte(`{"events":[{"id":"d1","phase":"intent","op_type":"X","timestamp":1,"subject":"a","subject":"b"}]}`), http.StatusBadRequest},
		{"data after the batch", "s3cret", append(batchJSON(1, 100), `{"events":[]}`...), http.StatusBadRequest},
		{"batch too large", "s3cret", batchJSON(1000, 0), http.StatusRequestEntityTooLarge},
		{"good", "s3cret", batchJSON(3, 0), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, http.DefaultClient, u, tc.token, tc.body)
			if code != tc.code {
				t.Fatalf("status %d (%s), want %d", code, body, tc.code)
			}
		})
	}
	if got := w.Durable(); got != 3 {
		t.Fatalf("durable head %d, want 3 (only the good batch is stored)", got)
	}
	code, body := post(t, http.DefaultClient, u, "s3cret", batchJSON(2, 3))
	var ack auditevent.Ack
	if code != 200 || json.Unmarshal(body, &ack) != nil || ack.FirstSeq != 4 || ack.LastSeq != 5 || ack.Accepted != 2 || len(ack.Hash) != 64 {
		t.Fatalf("ack %d %s, want seq 4..5 (sender-supplied seq/hash ignored)", code, body)
	}
	m := metricsText(t, http.DefaultClient, "http://"+addr+"/metrics")
	for _, want := range []string{`meshwarden_audit_events_acked_total 5`, `meshwarden_audit_rejected_total{reason="unauthenticated"} 2`, `meshwarden_audit_wal_head_seq 5`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestMTLSSpiffeAllowList(t *testing.T) {
	p := newPKI(t)
	srvCert := p.leaf(t, "", true)
	addr, _ := start(t, Config{
		TLS:         &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: p.caPool, ClientAuth: tls.VerifyClientCertIfGiven},
		AllowSPIFFE: []string{"spiffe://dc1/ns/default/svc/gateway"},
	})
	u := "https://" + addr + auditevent.IngestPath
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: p.caPool}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	gw := p.leaf(t, "spiffe://dc1/ns/default/svc/gateway", false)
	evil := p.leaf(t, "spiffe://dc1/ns/default/svc/evil", false)
	other := newPKI(t).leaf(t, "spiffe://dc1/ns/default/svc/gateway", false)
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		code int
	}{
		{"allowed spiffe id", &gw, 200},
		{"spiffe id not allowed", &evil, 403},
		{"no certificate, no token", nil, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := post(t, client(tc.cert), u, "", batchJSON(1, 0)); code != tc.code {
				t.Fatalf("status %d (%s), want %d", code, body, tc.code)
			}
		})
	}
	t.Run("certificate from another CA", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(batchJSON(1, 0)))
		if resp, err := client(&other).Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("untrusted client certificate got status %d, want a TLS handshake failure", resp.StatusCode)
		}
	})
}

func TestNewRefusesNoAuth(t *testing.T) {
	w, err := wal.Open(context.Background(), wal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := New(Config{WAL: w}); err == nil {
		t.Fatal("collector without any sender authentication was built")
	}
}

func TestRegistersInConsul(t *testing.T) {
	_, c := consultest.Long(t)
	addr, _ := start(t, Config{Tokens: []string{"x"}})
	a, _ := net.ResolveTCPAddr("tcp", addr)
	dereg, err := RegisterConsul(c, a, false)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		svcs, _, err := c.Health().Service(meshnames.CollectorServiceName, "", true, nil)
		if err == nil && len(svcs) == 1 && svcs[0].Service.Port == a.Port {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became healthy in consul: %v %v", meshnames.CollectorServiceName, svcs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := dereg(); err != nil {
		t.Fatal(err)
	}
	svcs, _, _ := c.Catalog().Service(meshnames.CollectorServiceName, "", nil)
	if len(svcs) != 0 {
		t.Fatalf("still registered after deregistration: %d", len(svcs))
	}
}

func TestServerTLSFromFiles(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePEM := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	srv := p.leaf(t, "", true)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srv.PrivateKey)
	certF := writePEM("srv.crt", "CERTIFICATE", srv.Certificate[0])
	keyF := writePEM("srv.key", "PRIVATE KEY", keyDER)
	caF := writePEM("ca.crt", "CERTIFICATE", p.ca.Raw)
	if _, err := ServerTLS(certF, keyF, filepath.Join(dir, "missing.crt")); err == nil {
		t.Fatal("missing --client-ca accepted")
	}
	cfg, err := ServerTLS(certF, keyF, caF)
	if err != nil {
		t.Fatal(err)
	}
	addr, w := start(t, Config{TLS: cfg, AllowSPIFFE: []string{"spiffe://dc1/ns/default/svc/gateway"}, Tokens: []string{"tok"}})
	gw := p.leaf(t, "spiffe://dc1/ns/default/svc/gateway", false)
	u := "https://" + addr + auditevent.IngestPath
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{gw}}}}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool}}}
	if code, body := post(t, withCert, u, "", batchJSON(1, 0)); code != 200 {
		t.Fatalf("mTLS sender: %d %s", code, body)
	}
	if code, body := post(t, noCert, u, "tok", batchJSON(1, 1)); code != 200 {
		t.Fatalf("token sender over TLS without a certificate: %d %s", code, body)
	}
	if w.Durable() != 2 {
		t.Fatalf("durable %d, want 2", w.Durable())
	}
}

func TestSourceIsBoundToTheAuthenticatedSender(t *testing.T) {
	p := newPKI(t)
	srvCert := p.leaf(t, "", true)
	const gwID = "spiffe://dc1/ns/default/svc/gateway"
	addr, w := start(t, Config{
		TLS:         &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: p.caPool, ClientAuth: tls.VerifyClientCertIfGiven},
		AllowSPIFFE: []string{gwID, "spiffe://dc1/ns/default/svc/web"},
		Tokens:      []string{"dev"},
	})
	u := "https://" + addr + auditevent.IngestPath
	gw := p.leaf(t, gwID, false)
	mtls := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{gw}}}}
	tok := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool}}}
	withSource := func(src, id string) []byte {
		b, _ := json.Marshal(auditevent.Batch{Events: []auditevent.Event{{ID: id, Phase: auditevent.PhaseOutcome, OpType: "FUND_TRANSFER", Subject: "bob", Source: src, Timestamp: 1}}})
		return b
	}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		token  string
		source string
		code   int
	}{
		{"certificate, another service's source", mtls, "", "spiffe://dc1/ns/default/svc/web", http.StatusForbidden},
		{"certificate, a node name as source", mtls, "", "gateway-1", http.StatusForbidden},
		{"certificate, own source", mtls, "", gwID, http.StatusOK},
		{"certificate, empty source", mtls, "", "", http.StatusOK},
		{"token claiming a SPIFFE id", tok, "dev", gwID, http.StatusForbidden},
		{"token, plain source", tok, "dev", "dev-proxy", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := post(t, tc.c, u, tc.token, withSource(tc.source, "ev-"+tc.name)); code != tc.code {
				t.Fatalf("status %d (%s), want %d", code, body, tc.code)
			}
		})
	}
	if w.Durable() != 3 {
		t.Fatalf("durable %d, want 3", w.Durable())
	}
	f, err := wal.NewFollower(w.Dir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sources []string
	for range 3 {
		_, e, err := f.Next(3)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, e.Source)
	}
	if sources[0] != gwID || sources[1] != gwID || sources[2] != "dev-proxy" {
		t.Fatalf("stored sources %q", sources)
	}
	m := metricsText(t, tok, "https://"+addr+"/metrics")
	if !strings.Contains(m, `meshwarden_audit_rejected_total{reason="source_mismatch"} 3`) {
		t.Fatalf("metrics lack 3 source_mismatch rejections:\n%s", m)
	}
}

func TestSameEventIDTwiceReturnsTheOriginalSeq(t *testing.T) {
	addr, w := start(t, Config{Tokens: []string{"s3cret"}})
	u := "http://" + addr + auditevent.IngestPath
	if code, body := post(t, http.DefaultClient, u, "s3cret", batchJSON(3, 0)); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	// A sender retrying after a lost ack: ids t1, t2 again, plus new t3.
	code, body := post(t, http.DefaultClient, u, "s3cret", batchJSON(3, 1))
	var ack auditevent.Ack
	if code != 200 || json.Unmarshal(body, &ack) != nil {
		t.Fatalf("%d %s", code, body)
	}
	if ack.Accepted != 1 || ack.FirstSeq != 4 || ack.LastSeq != 4 || len(ack.Duplicates) != 2 ||
		ack.Duplicates[0] != (auditevent.Duplicate{ID: "t1-1-intent", Seq: 2}) || ack.Duplicates[1] != (auditevent.Duplicate{ID: "t2-1-intent", Seq: 3}) {
		t.Fatalf("ack %s", body)
	}
	if w.Durable() != 4 {
		t.Fatalf("durable %d, want 4: a repeated id was stored twice", w.Durable())
	}
	if m := metricsText(t, http.DefaultClient, "http://"+addr+"/metrics"); !strings.Contains(m, "meshwarden_audit_duplicates_total 2") {
		t.Fatalf("metrics lack meshwarden_audit_duplicates_total 2")
	}
}
