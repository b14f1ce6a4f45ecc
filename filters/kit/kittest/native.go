//go:build !wasip1

package kittest

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
)

// RefusesConfig checks, in the native emulator, that the plugin of vm
// refuses to start with config and that its critical log names field.
func RefusesConfig(t *testing.T, vm func(*proxywasm.VM) proxywasm.VMContext, config, field string) {
	t.Helper()
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm).
		WithPluginConfiguration([]byte(config)))
	defer reset()
	host.StartVM()
	if host.StartPlugin() != proxywasm.OnPluginStartStatusFailed {
		t.Fatalf("plugin started with %s", config)
	}
	if logs := strings.Join(host.GetCriticalLogs(), "\n"); !strings.Contains(logs, field) {
		t.Errorf("critical logs do not name the field %s: %q", field, logs)
	}
}
