package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// TestStartUpHangDoesNotWedgeTheGateway: new versions of three filters
// whose modules loop in _initialize, proxy_on_vm_start and
// proxy_on_configure arrive in the same push as a rotated certificate. The
// certificate is served at once (the modules start in the background), the
// last known good versions keep filtering, /config_dump answers, and each
// bad version is refused within the call timeout with the callback named.
func TestStartUpHangDoesNotWedgeTheGateway(t *testing.T) {
	hostile, initloop := testGuest(t, "hostile"), testGuest(t, "initloop")
	ms := startModuleServer(t)
	ms.put("/hostile.wasm", hostile)
	ms.put("/initloop.wasm", initloop)
	pki := newPKI(t)
	leaf := meshnames.LeafSecretName("gateway")
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	up := startUpstream(t, "app")

	const callTimeout = 5 * time.Second
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-startup", func(c *Config) { c.WasmCallTimeout = callTimeout })
	names := []string{"f-init", "f-vm", "f-conf"}
	lst := httpListener(t, gw.port(), "r", names...)
	lst.FilterChains[0].TransportSocket = &core.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(leaf)}}})}}
	rc := routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo("app")})
	ext := func(name, file, vmConf, conf string) *core.TypedExtensionConfig {
		e := wasmFilterExt(t, name, name, ms.URL+"/"+file, modulefetch.Sum(ms.files["/"+file]), wasmv3.FailurePolicy_FAIL_CLOSED, conf)
		w := &wasmfilter.Wasm{}
		if err := e.GetTypedConfig().UnmarshalTo(w); err != nil {
			t.Fatal(err)
		}
		if vmConf != "" {
			w.GetConfig().GetVmConfig().Configuration = mustAny(t, wrapperspb.String(vmConf))
		}
		e.TypedConfig = mustAny(t, w)
		return e
	}
	publish := func(certPEM, keyPEM []byte, exts ...*core.TypedExtensionConfig) {
		rs := []types.Resource{lst, rc, edsCluster("app", nil), cla("app", lbEndpoint(up.addr(), 0)), leafSecret(leaf, certPEM, keyPEM)}
		for _, e := range exts {
			rs = append(rs, e)
		}
		plane.set("gw-startup", rs...)
	}
	cert1, key1, serial1 := pki.leaf("spiffe://test.mesh/ns/default/svc/gateway")
	publish(cert1, key1, ext("f-init", "hostile.wasm", "", "{}"), ext("f-vm", "hostile.wasm", "", "{}"), ext("f-conf", "hostile.wasm", "", "{}"))
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	url := strings.Replace(gw.url, "http://", "https://", 1)
	serial := func() (int64, int) {
		resp, err := c.Get(url + "/")
		if err != nil {
			return 0, 0
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), resp.StatusCode
	}
	if s, code := serial(); s != serial1 || code != 200 {
		t.Fatalf("first version: serial %d code %d, want %d 200", s, code, serial1)
	}

	cert2, key2, serial2 := pki.leaf("spiffe://test.mesh/ns/default/svc/gateway")
	pushed := time.Now()
	publish(cert2, key2, ext("f-init", "initloop.wasm", "", "{}"), ext("f-vm", "hostile.wasm", "loop", "{}"), ext("f-conf", "hostile.wasm", "", "loop"))
	eventually(t, callTimeout/2, "rotated certificate while the new filter versions start", func() bool {
		s, code := serial()
		return s == serial2 && code == 200
	})
	if took := time.Since(pushed); took >= callTimeout {
		t.Fatalf("certificate rotated after %v: the build waited for the modules' start-up (call timeout %v)", took, callTimeout)
	}
	want := map[string]string{"f-init": "_initialize", "f-vm": "proxy_on_vm_start", "f-conf": "proxy_on_configure"}
	// Generous: under -race on a loaded machine compiling a module takes a minute.
	eventually(t, 150*time.Second, "each hanging version refused with its callback named", func() bool {
		refused := 0
		for _, f := range configDump(t, gw.admin).Filters {
			if cb := want[f.Name]; cb != "" && f.State == "last_known_good" && strings.Contains(f.LastError, "timeout in "+cb) {
				refused++
			}
		}
		return refused == len(want)
	})
	if took := time.Since(pushed); took < callTimeout {
		t.Fatalf("refused after %v, before the %v call timeout", took, callTimeout)
	}
	if s, code := serial(); s != serial2 || code != 200 {
		t.Fatalf("after the refusals: serial %d code %d, want %d 200 through the last known good filters", s, code, serial2)
	}
}

// TestStartingFilterWithoutKnownGoodWarms: a first version still starting
// (here: looping in proxy_on_configure) makes the config warm — not ready,
// /config_dump says why — until its start ends; refused at the call
// timeout, its fail policy applies (fail closed: 503).
func TestStartingFilterWithoutKnownGoodWarms(t *testing.T) {
	hostile := testGuest(t, "hostile")
	ms := startModuleServer(t)
	ms.put("/hostile.wasm", hostile)
	up := startUpstream(t, "app")
	const callTimeout = 3 * time.Second
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-warm", func(c *Config) { c.WasmCallTimeout = callTimeout })
	rc := routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo("app")})
	pushed := time.Now()
	plane.set("gw-warm", httpListener(t, gw.port(), "r", "f-conf"), rc, edsCluster("app", nil), cla("app", lbEndpoint(up.addr(), 0)),
		wasmFilterExt(t, "f-conf", "f-conf", ms.URL+"/hostile.wasm", modulefetch.Sum(hostile), wasmv3.FailurePolicy_FAIL_CLOSED, "loop"))
	eventually(t, 30*time.Second, "warming on the starting filter", func() bool {
		d := configDump(t, gw.admin)
		return !d.Ready && strings.Contains(d.Pending, "wasm filter f-conf (starting since")
	})
	eventually(t, 60*time.Second, "refused, then served per the fail policy", gw.g.Ready)
	if took := time.Since(pushed); took < callTimeout {
		t.Fatalf("ready after %v, before the start-up could have timed out (%v)", took, callTimeout)
	}
	c := &http.Client{}
	if code, _, _ := get(t, c, gw.url+"/"); code != http.StatusServiceUnavailable {
		t.Fatalf("fail-closed filter refused at start: %d, want 503", code)
	}
	for _, f := range configDump(t, gw.admin).Filters {
		if f.Name == "f-conf" && (f.State != "fail_closed" || !strings.Contains(f.LastError, "timeout in proxy_on_configure")) {
			t.Fatalf("status %+v: want fail_closed with the proxy_on_configure timeout", f)
		}
	}
}

func TestStartRetryBackoff(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{1, 3 * time.Second}, {2, 6 * time.Second}, {3, 12 * time.Second}, {7, 192 * time.Second}, {8, 5 * time.Minute}, {50, 5 * time.Minute}} {
		if got := (&startJob{failures: tc.failures}).retryAfter(); got != tc.want {
			t.Errorf("%d failures: retry after %v, want %v", tc.failures, got, tc.want)
		}
	}
}
