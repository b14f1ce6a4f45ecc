package headers_test

import (
	"slices"
	"testing"

	"github.com/meshwarden/meshwarden/filters/internal/testguests/headers"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func TestHeadersFilter(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		req      [][2]string
		wantReq  [][2]string
		wantResp [][2]string
	}{
		{
			name: "default name",
			req:  [][2]string{{":path", "/abc"}, {"X-MW-Remove", "1"}, {"x-mw-filter", "spoofed"}},
			wantReq: [][2]string{
				{":path", "/abc"}, {headers.HeaderStamp, "headers"}, {headers.HeaderPathLen, "4"},
			},
			wantResp: [][2]string{{":status", "200"}, {headers.HeaderServedBy, "headers"}},
		},
		{
			name:     "configured name, no path",
			config:   "edge-1",
			req:      [][2]string{{":method", "GET"}},
			wantReq:  [][2]string{{":method", "GET"}, {headers.HeaderStamp, "edge-1"}},
			wantResp: [][2]string{{":status", "200"}, {headers.HeaderServedBy, "edge-1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
				WithVMContext(headers.NewVMContext).WithPluginConfiguration([]byte(tt.config)))
			defer reset()
			if host.StartVM() != types.OnVMStartStatusOK || host.StartPlugin() != types.OnPluginStartStatusOK {
				t.Fatal("start failed")
			}
			id := host.InitializeHttpContext()
			if a := host.CallOnRequestHeaders(id, tt.req, true); a != proxywasm.ActionContinue {
				t.Errorf("request action %v", a)
			}
			if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true); a != proxywasm.ActionContinue {
				t.Errorf("response action %v", a)
			}
			if got := host.GetCurrentRequestHeaders(id); !slices.Equal(got, tt.wantReq) {
				t.Errorf("request headers = %q\nwant %q", got, tt.wantReq)
			}
			if got := host.GetCurrentResponseHeaders(id); !slices.Equal(got, tt.wantResp) {
				t.Errorf("response headers = %q\nwant %q", got, tt.wantResp)
			}
			host.CompleteHttpContext(id)
		})
	}
}
