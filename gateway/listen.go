package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// tlsSwitchListener terminates TLS on accepted connections when the current
// listener config has a DownstreamTlsContext; the certificate is read from
// the current model at each handshake, so an SDS rotation applies to the
// next connection without a restart.
type tlsSwitchListener struct {
	net.Listener
	g *Gateway
}

func (l *tlsSwitchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	m := l.g.model.Load()
	if m == nil || m.listener.tls == nil {
		return c, nil
	}
	return tls.Server(c, &tls.Config{GetConfigForClient: l.g.serverTLS}), nil
}

func (g *Gateway) serverTLS(*tls.ClientHelloInfo) (*tls.Config, error) {
	m := g.model.Load()
	if m == nil || m.listener.tls == nil {
		return nil, errors.New("tls is no longer configured for this listener")
	}
	spec := m.listener.tls
	cert := g.secrets.cert(spec.certSecret)
	if cert == nil {
		return nil, fmt.Errorf("certificate secret %q has not arrived", spec.certSecret)
	}
	alpn := spec.alpn
	if len(alpn) == 0 {
		alpn = []string{"h2", "http/1.1"}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, NextProtos: alpn}
	if spec.rootsSecret != "" {
		cfg.ClientCAs = g.secrets.roots(spec.rootsSecret)
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if spec.requireClient {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}
