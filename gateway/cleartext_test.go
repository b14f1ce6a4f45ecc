package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// TestCleartextPIIOverRealConnections runs the real audit filter with
// pii.cleartext: block in two gateways on loopback, one plaintext and one
// terminating mTLS: connection.mtls comes from the real connection, so
// the card is refused over plaintext (426, audited) and forwarded masked
// over mTLS.
func TestCleartextPIIOverRealConnections(t *testing.T) {
	ms, wasm := serveAuditFilter(t)
	var (
		mu     sync.Mutex
		bodies []string
	)
	audits := &kittest.AuditSink{}
	collector := httptest.NewServer(audits)
	t.Cleanup(collector.Close)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(upstream.Close)

	cfg := `{"rules":[{"methods":["POST"],"path":{"prefix":"/v1/transfers"},"opType":"FUND_TRANSFER","tags":["pci"],
		"fields":[{"body":"card.number","action":"mask","forward":true}],
		"pii":{"action":"mask-in-audit","detectors":["card"],"cleartext":"block"}}],
		"collector":{"cluster":"` + meshnames.AuditClusterName + `"},"batch":{"flushIntervalMs":50}}`
	ext := wasmFilterExt(t, "mw.audit", "audit", ms.URL+"/audit.wasm", modulefetch.Sum(wasm), wasmv3.FailurePolicy_FAIL_CLOSED, cfg)
	pki := newPKI(t)
	gwCert, gwKey, _ := pki.leaf("spiffe://test.mesh/ns/default/svc/gateway")
	plane := startPlane(t)
	start := func(node string, mtls bool) *runningGateway {
		gw := startGateway(t, plane, node, nil)
		l := httpListener(t, gw.port(), "r", "mw.audit")
		if mtls {
			l.FilterChains[0].TransportSocket = &core.TransportSocket{Name: "envoy.transport_sockets.tls",
				ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
					RequireClientCertificate: wrapperspb.Bool(true),
					CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(meshnames.LeafSecretName("gateway"))},
						ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds(meshnames.RootsSecretName)}}})}}
		}
		plane.set(node, append(auditedApp(ext, upstream.Listener.Addr().String(), collector.Listener.Addr().String()), l,
			leafSecret(meshnames.LeafSecretName("gateway"), gwCert, gwKey), rootsSecret(pki.caPEM))...)
		eventually(t, 90*time.Second, node+" readiness", gw.g.Ready)
		return gw
	}
	plain, secure := start("gw-plain", false), start("gw-mtls", true)

	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	cc, ck, _ := pki.leaf("spiffe://test.mesh/ns/default/svc/web")
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	mtlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	const card = "4111 1111 1111 1111"
	transfer := `{"amount":"10.00","card":{"number":"` + card + `"}}`
	tests := []struct {
		name, url, body string
		client          *http.Client
		status          int
		blocked         string
	}{
		{"card over plaintext", plain.url, transfer, http.DefaultClient, http.StatusUpgradeRequired, "cleartext-pii:card"},
		{"no card over plaintext", plain.url, `{"amount":"10.00"}`, http.DefaultClient, http.StatusOK, ""},
		{"card over mTLS", strings.Replace(secure.url, "http://", "https://", 1), transfer, mtlsClient, http.StatusOK, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen := len(bodies)
			mu.Unlock()
			resp, err := tt.client.Post(tt.url+"/v1/transfers", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			reply, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, reply, tt.status)
			}
			mu.Lock()
			forwarded := bodies[seen:]
			mu.Unlock()
			if (tt.status == http.StatusOK) != (len(forwarded) == 1) {
				t.Errorf("forwarded %q with status %d", forwarded, resp.StatusCode)
			}
			for _, b := range forwarded {
				if strings.Contains(b, card) {
					t.Errorf("card in clear upstream: %s", b)
				}
			}
			var ev auditevent.Event
			eventually(t, 10*time.Second, "the outcome record", func() bool {
				n := 0
				for _, e := range audits.Events() {
					if e.Phase == auditevent.PhaseOutcome {
						if n == i {
							ev = e
							return true
						}
						n++
					}
				}
				return false
			})
			if ev.Blocked != tt.blocked || ev.Status != tt.status || strings.Contains(string(ev.AppendCanonical(nil)), card) {
				t.Errorf("record = %+v", ev)
			}
		})
	}
}
