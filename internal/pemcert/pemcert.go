// Package pemcert parses the certificates of PEM text (a CA bundle, a
// chain, a root answered by an API): the plane's certificates manager, the
// demo and the test harness read them alike.
package pemcert

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

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
