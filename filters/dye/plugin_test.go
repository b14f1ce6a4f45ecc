//go:build !wasip1

package dye

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
)

func header(hs [][2]string, k string) string {
	for _, h := range hs {
		if h[0] == k {
			return h[1]
		}
	}
	return ""
}

func TestPluginNative(t *testing.T) {
	opt := proxytest.NewEmulatorOption().WithVMContext(NewVMContext).
		WithPluginConfiguration([]byte(testConfig)).
		WithProperty([]string{"connection", "uri_san_peer_certificate"}, []byte("spiffe://bank.example/ns/retail/sa/web"))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	if host.StartVM() != proxywasm.OnVMStartStatusOK || host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
		t.Fatalf("start failed: %v", host.GetCriticalLogs())
	}
	tests := []struct {
		name     string
		hdr      [][2]string
		lane     string
		baggage  string
		stripped uint64
	}{
		{"tenant rule by peer identity", [][2]string{{":method", "POST"}, {":path", "/v2/x"}}, "v2", "mw-dye=v2,mw-tenant=retail", 0},
		{"spoofed dye stripped", [][2]string{{":method", "GET"}, {":path", "/"}, {"x-mw-dye", "private"}, {"baggage", "a=1"}}, "stable", "mw-dye=stable,mw-tenant=retail,a=1", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := host.InitializeHttpContext()
			if a := host.CallOnRequestHeaders(id, tt.hdr, true); a != proxywasm.ActionContinue {
				t.Fatalf("action = %v", a)
			}
			got := host.GetCurrentRequestHeaders(id)
			if header(got, "x-mw-dye") != tt.lane || header(got, "baggage") != tt.baggage {
				t.Errorf("headers = %v, want lane %q baggage %q", got, tt.lane, tt.baggage)
			}
			host.CompleteHttpContext(id)
		})
	}
	if n, err := host.GetCounterMetric("mw_dye_stripped_total"); err != nil || n != 1 {
		t.Errorf("mw_dye_stripped_total = %d, %v; want 1", n, err)
	}
	if n, err := host.GetCounterMetric("mw_dye_dyed_total"); err != nil || n != 2 {
		t.Errorf("mw_dye_dyed_total = %d, %v; want 2", n, err)
	}
}

func TestPluginNativeRefusesBadConfig(t *testing.T) {
	kittest.RefusesConfig(t, NewVMContext, `{"defaultLane":"No_Lane"}`, "defaultLane")
}

// TestIgnoresResponseBody: the stream context's promise that lets a native
// host pass the response body on untouched holds.
func TestIgnoresResponseBody(t *testing.T) { kittest.IgnoresResponseBody(t, &httpContext{}) }
