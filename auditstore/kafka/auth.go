package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/meshwarden/meshwarden/internal/pemcert"
)

// ClientTLS builds the TLS configuration for the brokers: caFile (PEM)
// verifies the brokers (empty: the system roots), and certFile/keyFile, if
// given, are the client certificate for brokers that require mTLS
// (ssl.client.auth=required).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := pemcert.PoolFile(caFile, "--kafka-tls-ca")
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--kafka-tls-cert and --kafka-tls-key go together: give both for a client certificate, or neither")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load --kafka-tls-cert/--kafka-tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// SASLMechanisms are the mechanisms [SASL] accepts.
var SASLMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// SASL returns the SASL mechanism named mech (case-insensitive) for user
// and password. PLAIN sends the password as it is, so it is refused without
// TLS.
func SASL(mech, user, password string, withTLS bool) (sasl.Mechanism, error) {
	if user == "" || password == "" {
		return nil, fmt.Errorf("--kafka-sasl-mechanism %s needs --kafka-sasl-user and a password (--kafka-sasl-password-file or MESHWARDEN_KAFKA_PASSWORD)", mech)
	}
	switch strings.ToUpper(mech) {
	case "PLAIN":
		if !withTLS {
			return nil, errors.New("--kafka-sasl-mechanism PLAIN sends the password in clear: use it with TLS (--kafka-tls or --kafka-tls-ca), or use SCRAM-SHA-512")
		}
		return plain.Auth{User: user, Pass: password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("--kafka-sasl-mechanism %q is not supported: use one of %s", mech, strings.Join(SASLMechanisms, ", "))
}
