package proxywasm_test

import (
	"fmt"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
)

// laneVM is a tiny filter: it copies the plugin configuration into the
// x-mw-dye request header and refuses requests to /admin locally.
// Every hostcall goes through the VM handed to its constructor.
type laneVM struct {
	proxywasm.DefaultVMContext
	vm *proxywasm.VM
}

func newLaneVM(vm *proxywasm.VM) proxywasm.VMContext { return &laneVM{vm: vm} }

func (v *laneVM) NewPluginContext(uint32) proxywasm.PluginContext { return &lanePlugin{vm: v.vm} }

type lanePlugin struct {
	proxywasm.DefaultPluginContext
	vm   *proxywasm.VM
	lane string
}

func (p *lanePlugin) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	cfg, err := p.vm.GetPluginConfiguration()
	if err != nil {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.lane = string(cfg)
	return proxywasm.OnPluginStartStatusOK
}

func (p *lanePlugin) NewHttpContext(uint32) proxywasm.HttpContext {
	return &laneStream{vm: p.vm, lane: p.lane}
}

type laneStream struct {
	proxywasm.DefaultHttpContext
	vm   *proxywasm.VM
	lane string
}

func (s *laneStream) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	if path, _ := s.vm.GetHttpRequestHeader(":path"); path == "/admin" {
		_ = s.vm.SendHttpResponse(403, nil, []byte("forbidden"), -1)
		return proxywasm.ActionPause
	}
	_ = s.vm.ReplaceHttpRequestHeader("x-mw-dye", s.lane)
	s.vm.LogInfof("dyed %s", s.lane)
	return proxywasm.ActionContinue
}

// A filter's logic tested natively: the emulator plays the host.
func Example() {
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(newLaneVM).
		WithPluginConfiguration([]byte("canary")))
	defer reset()
	host.StartVM()
	host.StartPlugin()

	id := host.InitializeHttpContext()
	action := host.CallOnRequestHeaders(id, [][2]string{{":path", "/orders"}}, true)
	fmt.Println(action == proxywasm.ActionContinue, host.GetCurrentRequestHeaders(id), host.GetInfoLogs())

	admin := host.InitializeHttpContext()
	host.CallOnRequestHeaders(admin, [][2]string{{":path", "/admin"}}, true)
	r := host.GetSentLocalResponse(admin)
	fmt.Println(r.StatusCode, string(r.Data))
	// Output:
	// true [[:path /orders] [x-mw-dye canary]] [dyed canary]
	// 403 forbidden
}
