package kit

import (
	"errors"
	"math/rand/v2"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/internal/guestcrypto"
)

// Property paths the filters read.
var (
	// PropPeerURISAN holds the peer's SPIFFE id (the URI SAN of its
	// certificate) in Envoy and the gateway.
	PropPeerURISAN = []string{"connection", "uri_san_peer_certificate"}
	// PropSourceAddress holds the peer's address, "ip:port".
	PropSourceAddress = []string{"source", "address"}
	// PropMTLS is Envoy's connection.mtls: one byte, 1 when the downstream
	// connection is TLS and the peer presented a certificate.
	PropMTLS = []string{"connection", "mtls"}
)

// DownstreamMTLS reports whether the request arrived over mTLS
// (connection.mtls); a host that does not know says no.
func DownstreamMTLS(vm *proxywasm.VM) bool {
	b, err := vm.GetProperty(PropMTLS)
	return err == nil && len(b) > 0 && b[0] != 0
}

// NewVMContext returns a VM context whose plugin contexts newPlugin makes,
// each with the VM vm: the VM context of every filter (and of the bundle),
// which keep their state in the plugin context.
func NewVMContext(vm *proxywasm.VM, newPlugin func(*proxywasm.VM) proxywasm.PluginContext) proxywasm.VMContext {
	return &vmContext{vm: vm, newPlugin: newPlugin}
}

type vmContext struct {
	proxywasm.DefaultVMContext
	vm        *proxywasm.VM
	newPlugin func(*proxywasm.VM) proxywasm.PluginContext
}

func (v *vmContext) NewPluginContext(uint32) proxywasm.PluginContext { return v.newPlugin(v.vm) }

// LoadConfig reads the plugin configuration and parses it with parse (the
// filter's config package's ParseConfig), in OnPluginStart. A configuration
// that cannot be read or parsed is logged at critical level, naming the
// filter and the field, and LoadConfig returns false: the plugin must fail
// its start.
func LoadConfig[T any](vm *proxywasm.VM, filter string, parse func([]byte) (T, error)) (T, bool) {
	var zero T
	data, err := vm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, proxywasm.ErrNotFound) && !errors.Is(err, proxywasm.ErrEmpty) {
		vm.LogCriticalf("%s: cannot read the plugin configuration: %v", filter, err)
		return zero, false
	}
	cfg, err := parse(data)
	if err != nil {
		vm.LogCriticalf("%s: refusing to start: %v", filter, err)
		return zero, false
	}
	return cfg, true
}

// NewChaCha8 returns a ChaCha8 stream seeded once from guestcrypto.Read
// (WASI random_get in the guest, crypto/rand natively), so that
// ids cost no random_get hostcall per request. Without randomness it logs
// that the filter refuses to start (it needs it for purpose) and returns
// false.
func NewChaCha8(vm *proxywasm.VM, filter, purpose string) (*rand.ChaCha8, bool) {
	var seed [32]byte
	if err := guestcrypto.Read(seed[:]); err != nil {
		vm.LogCriticalf("%s: refusing to start: no randomness for %s: %v", filter, purpose, err)
		return nil, false
	}
	return rand.NewChaCha8(seed), true
}

// StartTick sets the plugin's tick period; a host that refuses is logged as
// a refusal to start (the tick is named, e.g. "flush") and StartTick returns
// false.
func StartTick(vm *proxywasm.VM, filter, name string, ms int) bool {
	if err := vm.SetTickPeriodMilliSeconds(uint32(ms)); err != nil {
		vm.LogCriticalf("%s: refusing to start: cannot set the %s tick: %v", filter, name, err)
		return false
	}
	return true
}
