package gateway

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
)

func h2Cluster(t testing.TB, name string) *cluster.Cluster {
	return edsCluster(name, func(c *cluster.Cluster) {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttp.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}}}}})}
	})
}

// TestProtocols drives h2c with gRPC-style trailers and a WebSocket upgrade
// through a gateway that runs a wasm filter.
func TestProtocols(t *testing.T) {
	wasm := headersGuest(t)
	ms := startModuleServer(t)
	ms.put("/headers.wasm", wasm)
	// A gRPC-like upstream over h2c: echoes the body, answers with trailers.
	grpcUp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("X-Upstream-Proto", r.Proto)
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.WriteHeader(200)
		_, _ = w.Write(b)
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "ok")
	}))
	grpcUp.Config.Protocols = new(http.Protocols)
	grpcUp.Config.Protocols.SetUnencryptedHTTP2(true)
	grpcUp.Start()
	t.Cleanup(grpcUp.Close)
	// A WebSocket-like upstream: 101, then echo.
	wsUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(conn, brw)
	}))
	t.Cleanup(wsUp.Close)

	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-proto", nil)
	rc := routeConfig(
		&route.Route{Name: "grpc", Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: "/pkg\\.Svc/[A-Za-z]+"}}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "grpc"}}}},
		&route.Route{Name: "ws", Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Path{Path: "/ws"}}, Action: routeTo("ws")},
	)
	plane.set("gw-proto", httpListener(t, gw.port(), "r", "mw-headers"), rc,
		wasmExt(t, "mw-headers", ms.URL+"/headers.wasm", modulefetch.Sum(wasm), false),
		h2Cluster(t, "grpc"), edsCluster("ws", nil),
		cla("grpc", lbEndpoint(grpcUp.Listener.Addr().String(), 0)), cla("ws", lbEndpoint(wsUp.Listener.Addr().String(), 0)))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	t.Run("h2c gRPC with trailers", func(t *testing.T) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		c := &http.Client{Transport: tr}
		req, _ := http.NewRequest("POST", gw.url+"/pkg.Svc/Echo", strings.NewReader("hello-grpc"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 || resp.Header.Get("X-Upstream-Proto") != "HTTP/2.0" {
			t.Fatalf("downstream %s, upstream %q: want HTTP/2 on both sides", resp.Proto, resp.Header.Get("X-Upstream-Proto"))
		}
		if string(body) != "hello-grpc" || resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "ok" {
			t.Fatalf("body %q trailers %v: want the echo and grpc-status 0", body, resp.Trailer)
		}
		if resp.Header.Get("X-Mw-Filtered") != "1" {
			t.Fatal("the filter did not see the gRPC response")
		}
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(gw.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		for _, msg := range []string{"ping", "second frame"} {
			_, _ = io.WriteString(conn, msg)
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
				t.Fatalf("echo %q, %v; want %q", buf, err, msg)
			}
		}
	})
}

// testPKI is a CA issuing SPIFFE certificates.
type testPKI struct {
	t      *testing.T
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	serial int64
}

func newPKI(t *testing.T) *testPKI {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testPKI{t: t, ca: ca, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 1}
}

func (p *testPKI) leaf(spiffe string) (certPEM, keyPEM []byte, serial int64) {
	p.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(spiffe)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(2 * time.Hour), URIs: []*url.URL{u}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), p.serial
}

func leafSecret(name string, certPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: keyPEM}}}}}
}

func rootsSecret(caPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: meshnames.RootsSecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: caPEM}}}}}
}

func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: ads()}
}

// TestTLSFromSDS terminates TLS with the SDS leaf (HTTP/2 by ALPN), rotates
// it live, and calls an mTLS upstream whose SPIFFE id is verified.
func TestTLSFromSDS(t *testing.T) {
	pki := newPKI(t)
	gwLeaf := meshnames.LeafSecretName("gateway")
	upCert, upKey, _ := pki.leaf("spiffe://test.mesh/ns/default/svc/api")
	upPair, _ := tls.X509KeyPair(upCert, upKey)
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	seenPeer := make(chan string, 100)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) > 0 {
			select {
			case seenPeer <- r.TLS.PeerCertificates[0].URIs[0].String():
			default:
			}
		}
		_, _ = io.WriteString(w, "secure")
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{upPair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	up.StartTLS()
	t.Cleanup(up.Close)

	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-tls", nil)
	lst := httpListener(t, gw.port(), "r")
	lst.FilterChains[0].TransportSocket = &core.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(gwLeaf)},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds(meshnames.RootsSecretName)}}})}}
	secure := func(san string) *cluster.Cluster {
		return edsCluster("api", func(c *cluster.Cluster) {
			c.TransportSocket = &core.TransportSocket{Name: "envoy.transport_sockets.tls",
				ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{
					CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(gwLeaf)},
						ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
							DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
								SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: san}}}}},
							ValidationContextSdsSecretConfig: sds(meshnames.RootsSecretName)}}}})}}
		})
	}
	rc := routeConfig(
		&route.Route{Match: prefixMatch("/"), Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "api"}, Timeout: nil}}},
	)
	cert1, key1, serial1 := pki.leaf("spiffe://test.mesh/ns/default/svc/gateway")
	publish := func(certPEM, keyPEM []byte, san string) {
		plane.set("gw-tls", lst, rc, secure(san), cla("api", lbEndpoint(up.Listener.Addr().String(), 0)),
			leafSecret(gwLeaf, certPEM, keyPEM), rootsSecret(pki.caPEM))
	}
	publish(cert1, key1, "spiffe://test.mesh/ns/default/svc/api")
	eventually(t, 10*time.Second, "readiness", gw.g.Ready)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	c := &http.Client{Transport: tr}
	url := strings.Replace(gw.url, "http://", "https://", 1)
	serialSeen := func() (int64, string, int) {
		resp, err := c.Get(url + "/")
		if err != nil {
			return 0, err.Error(), 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), string(b), resp.ProtoMajor
	}
	t.Run("terminate with the SDS leaf, h2 by ALPN, mTLS upstream", func(t *testing.T) {
		s, body, major := serialSeen()
		if s != serial1 || body != "secure" || major != 2 {
			t.Fatalf("serial %d body %q HTTP/%d; want %d secure HTTP/2", s, body, major, serial1)
		}
		if p := <-seenPeer; p != "spiffe://test.mesh/ns/default/svc/gateway" {
			t.Fatalf("upstream saw client %q, want the gateway's SPIFFE id", p)
		}
	})
	t.Run("live leaf rotation", func(t *testing.T) {
		cert2, key2, serial2 := pki.leaf("spiffe://test.mesh/ns/default/svc/gateway")
		publish(cert2, key2, "spiffe://test.mesh/ns/default/svc/api")
		eventually(t, 10*time.Second, "rotated certificate", func() bool { s, _, _ := serialSeen(); return s == serial2 })
	})
	t.Run("SPIFFE id mismatch refused", func(t *testing.T) {
		cert3, key3, _ := pki.leaf("spiffe://test.mesh/ns/default/svc/gateway")
		publish(cert3, key3, "spiffe://test.mesh/ns/default/svc/other")
		eventually(t, 10*time.Second, "502 for a wrong upstream identity", func() bool {
			resp, err := c.Get(url + "/")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusBadGateway
		})
	})
	_ = wrapperspb.Bool
}

// TestPeerIdentityAndCallout runs wasmhost's conformance guest behind an
// mTLS listener: the peer's SPIFFE id reaches the filter as a property, and
// the filter's dispatch_http_call goes to a cluster from CDS/EDS.
func TestPeerIdentityAndCallout(t *testing.T) {
	wasm := testGuest(t, "conformance")
	ms := startModuleServer(t)
	ms.put("/conf.wasm", wasm)
	pki := newPKI(t)
	up := startUpstream(t, "callee")
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-peer", nil)
	lst := httpListener(t, gw.port(), "r", "conf")
	lst.FilterChains[0].TransportSocket = &core.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(meshnames.LeafSecretName("gateway"))},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds(meshnames.RootsSecretName)}}})}}
	rc := routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo("upstream")})
	gwCert, gwKey, _ := pki.leaf("spiffe://test.mesh/ns/default/svc/gateway")
	plane.set("gw-peer", lst, rc, wasmExt(t, "conf", ms.URL+"/conf.wasm", modulefetch.Sum(wasm), false),
		edsCluster("upstream", nil), cla("upstream", lbEndpoint(up.addr(), 0)),
		leafSecret(meshnames.LeafSecretName("gateway"), gwCert, gwKey), rootsSecret(pki.caPEM))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	clientCert, clientKey, _ := pki.leaf("spiffe://test.mesh/ns/default/svc/client")
	pair, _ := tls.X509KeyPair(clientCert, clientKey)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	base := strings.Replace(gw.url, "http://", "https://", 1)

	t.Run("peer SPIFFE id as a property", func(t *testing.T) {
		code, _, _ := get(t, c, base+"/p", "x-test", "properties")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		h := *up.last.Load()
		if got := h.Get("X-R-P-Connection.uri_san_peer_certificate"); got != "spiffe://test.mesh/ns/default/svc/client" {
			t.Fatalf("filter saw peer %q (headers %v)", got, h)
		}
		if v, m := h.Get("X-R-P-Connection.tls_version"), h.Get("X-R-P-Connection.mtls"); v != "TLSv1.3" || m != "1:1" {
			t.Errorf("filter saw connection.tls_version %q, connection.mtls %q; want Envoy's TLSv1.3 and 1:1", v, m)
		}
	})
	t.Run("dispatch_http_call to a CDS cluster", func(t *testing.T) {
		code, body, _ := get(t, c, base+"/c", "x-test", "call-reply")
		if code != 201 || body != "call said: callee" {
			t.Fatalf("got %d %q, want 201 from the filter with the callee's body", code, body)
		}
	})
	t.Run("client without certificate refused", func(t *testing.T) {
		nc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		if resp, err := nc.Get(base + "/"); err == nil {
			resp.Body.Close()
			t.Fatalf("status %d without a client certificate, want a handshake failure", resp.StatusCode)
		}
	})
}
