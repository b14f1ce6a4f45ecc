package proxytest

import (
	"time"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

// EmulatorOption configures a HostEmulator. Each With method returns the
// option itself so calls chain.
type EmulatorOption struct {
	newVMContext func(*proxywasm.VM) proxywasm.VMContext
	pluginConfig []byte
	vmConfig     []byte
	vmID         string
	properties   map[string][]byte
	logLevel     LogLevel
	now          func() time.Time
}

// NewEmulatorOption returns the default option: no configuration, VM id "",
// log level trace (everything is recorded), the real clock.
func NewEmulatorOption() *EmulatorOption {
	return &EmulatorOption{properties: map[string][]byte{}, now: time.Now}
}

// WithVMContext sets the constructor of the filter's VMContext (for the
// built-in filters, their NewVMContext). It is required: NewHostEmulator
// creates a VM for the emulator and calls newVMContext with it, as a native
// host does for every instance.
func (o *EmulatorOption) WithVMContext(newVMContext func(*proxywasm.VM) proxywasm.VMContext) *EmulatorOption {
	o.newVMContext = newVMContext
	return o
}

// WithPluginConfiguration sets the bytes GetPluginConfiguration returns.
func (o *EmulatorOption) WithPluginConfiguration(data []byte) *EmulatorOption {
	o.pluginConfig = data
	return o
}

// WithVMConfiguration sets the bytes GetVMConfiguration returns.
func (o *EmulatorOption) WithVMConfiguration(data []byte) *EmulatorOption {
	o.vmConfig = data
	return o
}

// WithVMID sets the VM id used by ResolveSharedQueue for this VM's queues.
func (o *EmulatorOption) WithVMID(id string) *EmulatorOption {
	o.vmID = id
	return o
}

// WithProperty sets the value GetProperty(path) returns, e.g.
// WithProperty([]string{"source", "address"}, []byte("10.0.0.1:5000")).
func (o *EmulatorOption) WithProperty(path []string, value []byte) *EmulatorOption {
	o.properties[propertyKey(path)] = value
	return o
}

// WithLogLevel sets the level GetLogLevel returns. Logs below it are still
// recorded: the level only informs the filter.
func (o *EmulatorOption) WithLogLevel(l LogLevel) *EmulatorOption {
	o.logLevel = l
	return o
}

// WithClock sets the clock behind GetCurrentTime.
func (o *EmulatorOption) WithClock(now func() time.Time) *EmulatorOption {
	o.now = now
	return o
}
