// Package pemcert parses the certificates of PEM text (a CA bundle, a
// chain, a root answered by an API): the plane's certificates manager, the
// demo and the test harness read them alike. VerifyChain checks a peer's
// chain as every part of the mesh does.
package pemcert

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// PoolFile reads the PEM certificates of the file at path into a pool.
// flag names the file in errors, as the user gave it: "read FLAG: ..." when
// it cannot be read, "FLAG PATH holds no PEM certificate" when it has none.
func PoolFile(path, flag string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", flag, path)
	}
	return pool, nil
}

// VerifyRaw is VerifyChain of the DER certificates a TLS peer sent, for
// tls.Config.VerifyPeerCertificate of a client that skips the host name
// check (SPIFFE leaves carry none). An intermediate that does not parse is
// left out.
func VerifyRaw(roots *x509.CertPool) func(raw [][]byte, _ [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no server certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		chain := []*x509.Certificate{leaf}
		for _, b := range raw[1:] {
			if ic, err := x509.ParseCertificate(b); err == nil {
				chain = append(chain, ic)
			}
		}
		return VerifyChain(chain, roots, time.Time{})
	}
}

// VerifyChain checks that chain (the leaf, then intermediates) chains to
// one of roots at now (the zero time: the current time). Mesh leaves are
// SPIFFE certificates, client and server at once, without a host name:
// any key usage passes and no name is checked (the caller checks the
// SPIFFE id). It returns x509's error unchanged.
func VerifyChain(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("no certificate to verify")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// Certificates parses every CERTIFICATE block of data, in order; other
// blocks (keys) are skipped. A block that does not parse is an error, and
// so is data with no CERTIFICATE block.
func Certificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found: give PEM-encoded certificates")
	}
	return out, nil
}
