package wasmhost

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// PluginConfig configures one plugin: a module plus its root context and
// configuration. Its fields mirror Envoy's envoy.extensions.wasm.v3.PluginConfig
// so one config feeds Envoy and the gateway; build it from the proto with
// PluginConfigFromProto.
type PluginConfig struct {
	// Name is the plugin name (property plugin_name). Required.
	Name string
	// RootID selects the root context inside the module (property plugin_root_id).
	RootID string
	// Configuration is the plugin configuration handed to proxy_on_configure.
	Configuration []byte
	// VMID groups plugins that share data and queues (property plugin_vm_id).
	VMID string
	// VMConfiguration is handed to proxy_on_vm_start.
	VMConfiguration []byte
	// CodeSHA256 is the expected lowercase hex sha256 of the module, if known.
	// NewPlugin refuses a module whose hash differs.
	CodeSHA256 string
	// FailOpen lets requests continue unfiltered when the plugin fails; when
	// false (fail-closed, Envoy's default) the request gets a local 503.
	FailOpen bool

	// PoolSize is the most instances the plugin runs. A stream is bound to
	// one instance but holds it only during its callbacks: streams get an
	// instance of their own while there are fewer than PoolSize open, and
	// share the least busy one beyond. Zero means GOMAXPROCS: at most that
	// many callbacks run at once, so more instances only add memory and
	// colder caches (Envoy runs one VM per worker thread).
	PoolSize int
	// CallTimeout bounds every single callback into the guest. Zero means 1s.
	// It is a guard against runaway guests, not a latency target: it is
	// wall-clock time, so on an overloaded host a healthy call can be
	// descheduled for tens of milliseconds, and a timeout discards the
	// instance.
	CallTimeout time.Duration
	// PauseTimeout bounds how long a paused stream waits for the guest to
	// resume it (proxy_continue_stream) or reply locally. Zero means 30s.
	PauseTimeout time.Duration
	// MaxHeaders bounds the number of entries of any header map the guest
	// writes; beyond it the hostcall fails with BadArgument and the callback
	// fails per the fail policy. Zero means 1024.
	MaxHeaders int
	// LogLevel is the level returned by proxy_get_log_level; guest logs below
	// it are dropped. Zero value is LogTrace.
	LogLevel LogLevel
	// Properties are plugin-wide properties (for example "node.id",
	// "node.cluster", "listener_direction"), keyed by their dotted path.
	Properties map[string][]byte
	// HTTPCaller performs proxy_http_call. Nil makes every call fail with
	// BadArgument (unknown cluster), as Envoy does for a missing cluster.
	HTTPCaller HTTPCaller
	// Logger receives guest logs and host diagnostics. Nil discards them.
	Logger *slog.Logger
}

func (c PluginConfig) withDefaults() PluginConfig {
	if c.PoolSize <= 0 {
		c.PoolSize = runtime.GOMAXPROCS(0)
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = time.Second
	}
	if c.PauseTimeout <= 0 {
		c.PauseTimeout = 30 * time.Second
	}
	if c.MaxHeaders <= 0 {
		c.MaxHeaders = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c PluginConfig) validate() error {
	if c.Name == "" {
		return fmt.Errorf("wasm plugin config: name is empty: set PluginConfig.Name")
	}
	if c.CodeSHA256 != "" && len(c.CodeSHA256) != 64 {
		return fmt.Errorf("wasm plugin %q: code sha256 %q is not 64 hex digits", c.Name, c.CodeSHA256)
	}
	return nil
}

// PluginConfigFromProto converts Envoy's PluginConfig to a PluginConfig.
// Configuration values that are google.protobuf.StringValue or BytesValue
// are unwrapped; any other Any contributes its serialized value, as Envoy
// does. The runtime field is accepted for every Envoy Wasm runtime except
// envoy.wasm.runtime.null (native code, which the gateway cannot run). The
// module code itself is not read: the caller fetches it by CodeSHA256 (a
// remote source) or from the local data source and passes it to Compile.
func PluginConfigFromProto(pc *wasmv3.PluginConfig) (PluginConfig, error) {
	if pc == nil {
		return PluginConfig{}, fmt.Errorf("wasm plugin config is nil")
	}
	cfg := PluginConfig{Name: pc.GetName(), RootID: pc.GetRootId()}
	var err error
	if cfg.Configuration, err = anyToBytes(pc.GetConfiguration()); err != nil {
		return PluginConfig{}, fmt.Errorf("wasm plugin %q configuration: %w", pc.GetName(), err)
	}
	switch pc.GetFailurePolicy() {
	case wasmv3.FailurePolicy_FAIL_OPEN:
		cfg.FailOpen = true
	case wasmv3.FailurePolicy_UNSPECIFIED:
		cfg.FailOpen = pc.GetFailOpen()
	}
	vm := pc.GetVmConfig()
	if vm == nil {
		return PluginConfig{}, fmt.Errorf("wasm plugin %q: vm_config is missing: set vm_config with code", pc.GetName())
	}
	if rt := vm.GetRuntime(); strings.HasSuffix(rt, ".null") {
		return PluginConfig{}, fmt.Errorf("wasm plugin %q: runtime %q runs native code the gateway does not have: use envoy.wasm.runtime.v8", pc.GetName(), rt)
	}
	cfg.VMID = vm.GetVmId()
	if cfg.VMConfiguration, err = anyToBytes(vm.GetConfiguration()); err != nil {
		return PluginConfig{}, fmt.Errorf("wasm plugin %q vm configuration: %w", pc.GetName(), err)
	}
	if r := vm.GetCode().GetRemote(); r != nil {
		cfg.CodeSHA256 = strings.ToLower(r.GetSha256())
	}
	if err := cfg.validate(); err != nil {
		return PluginConfig{}, err
	}
	return cfg, nil
}

func anyToBytes(a *anypb.Any) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	switch a.GetTypeUrl() {
	case "type.googleapis.com/google.protobuf.StringValue":
		var s wrapperspb.StringValue
		if err := a.UnmarshalTo(&s); err != nil {
			return nil, fmt.Errorf("unpack StringValue: %w", err)
		}
		return []byte(s.GetValue()), nil
	case "type.googleapis.com/google.protobuf.BytesValue":
		var b wrapperspb.BytesValue
		if err := a.UnmarshalTo(&b); err != nil {
			return nil, fmt.Errorf("unpack BytesValue: %w", err)
		}
		return b.GetValue(), nil
	}
	return a.GetValue(), nil
}
