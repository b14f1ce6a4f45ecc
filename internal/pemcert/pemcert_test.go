package pemcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func selfSigned(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCertificates(t *testing.T) {
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not parsed")})
	data := append(append(append(selfSigned(t, "one"), key...), selfSigned(t, "two")...), "trailing text\n"...)
	certs, err := Certificates(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || certs[0].Subject.CommonName != "one" || certs[1].Subject.CommonName != "two" {
		t.Fatalf("got %d certificates, want one and two in order", len(certs))
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"no certificate", key, "no PEM CERTIFICATE block"},
		{"not PEM", []byte("hello"), "no PEM CERTIFICATE block"},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), "parse certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Certificates(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// issue makes a certificate for tmpl signed by parent (tmpl itself when
// parent is nil) and returns it with its key.
func issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// TestVerifyChain: a leaf for client auth only (a mesh leaf is client and
// server) chains through its intermediate to the root; without the
// intermediate, under another root or after it expired, it does not.
func TestVerifyChain(t *testing.T) {
	now := time.Now()
	ca := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	}
	root, rootKey := issue(t, ca(1, "root"), nil, nil)
	inter, interKey := issue(t, ca(2, "intermediate"), root, rootKey)
	leaf, _ := issue(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "leaf"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, inter, interKey)
	other, _ := issue(t, ca(4, "other root"), nil, nil)
	roots, otherRoots := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	otherRoots.AddCert(other)

	if err := VerifyChain([]*x509.Certificate{leaf, inter}, roots, time.Time{}); err != nil {
		t.Fatalf("leaf and intermediate under the root: %v", err)
	}
	if err := VerifyChain([]*x509.Certificate{leaf}, roots, time.Time{}); err == nil {
		t.Error("leaf without its intermediate verified")
	}
	if err := VerifyChain([]*x509.Certificate{leaf, inter}, otherRoots, time.Time{}); err == nil {
		t.Error("chain verified under another root")
	}
	if err := VerifyChain([]*x509.Certificate{leaf, inter}, roots, now.Add(2*time.Hour)); err == nil {
		t.Error("chain verified after it expired")
	}
	if err := VerifyChain(nil, roots, time.Time{}); err == nil {
		t.Error("an empty chain verified")
	}
}

// TestVerifyRaw: the DER chain a TLS peer sends verifies as VerifyChain
// does; nothing sent, or bytes that are not a certificate, fail.
func TestVerifyRaw(t *testing.T) {
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	root, rootKey := issue(t, tmpl, nil, nil)
	leaf, _ := issue(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, root, rootKey)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	verify := VerifyRaw(roots)
	if err := verify([][]byte{leaf.Raw, []byte("not DER")}, nil); err != nil {
		t.Fatalf("leaf under the root (and an unparsable extra): %v", err)
	}
	if err := verify(nil, nil); err == nil || err.Error() != "no server certificate" {
		t.Errorf("nothing sent: %v", err)
	}
	if err := verify([][]byte{[]byte("not DER")}, nil); err == nil {
		t.Error("a leaf that is not a certificate verified")
	}
	if err := VerifyRaw(x509.NewCertPool())([][]byte{leaf.Raw}, nil); err == nil {
		t.Error("verified without the root")
	}
}

// TestPoolFile: a PEM bundle becomes a pool; a missing file and a file
// without a certificate are errors naming the flag.
func TestPoolFile(t *testing.T) {
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(good, selfSigned(t, "ca"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("no PEM here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pool, err := PoolFile(good, "--ca"); err != nil || pool == nil {
		t.Fatalf("PoolFile of a PEM certificate: %v", err)
	}
	if _, err := PoolFile(empty, "--ca"); err == nil || err.Error() != "--ca "+empty+" holds no PEM certificate" {
		t.Errorf("PoolFile without a certificate: %v", err)
	}
	if _, err := PoolFile(filepath.Join(dir, "missing.pem"), "--ca"); err == nil || !strings.HasPrefix(err.Error(), "read --ca: ") {
		t.Errorf("PoolFile of a missing file: %v", err)
	}
}
