package proxywasm

import (
	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// The context interfaces and their no-op implementations are the SDK's (see
// the package doc); these aliases let a filter import only this package.
type (
	// VMContext is the root of a filter: one per wasm VM. Its NewPluginContext
	// is called for every plugin configuration.
	VMContext = types.VMContext
	// PluginContext is one plugin configuration. OnPluginStart receives the
	// size of the configuration (read it with GetPluginConfiguration);
	// NewHttpContext is called for every HTTP stream.
	PluginContext = types.PluginContext
	// HttpContext is one HTTP stream (a request/response pair).
	HttpContext = types.HttpContext //nolint:revive // SDK name.
	// HttpContextRecycler is a PluginContext given back each HttpContext
	// it made when the host deletes the stream (proxy_on_delete, after
	// OnHttpStreamDone): no callback for that stream follows, so the plugin
	// may keep the context and return it from NewHttpContext for a later
	// stream instead of allocating one per stream.
	HttpContextRecycler = abi.HttpContextRecycler
	// ResponseBodyIgnorer is an HttpContext whose OnHttpResponseBody and
	// OnHttpResponseTrailers do nothing and that says so. A host running
	// the filter natively (the gateway's) then passes the response body and
	// trailers on untouched, as they arrive, instead of through the filter;
	// a wasm host still calls the callbacks, which still do nothing.
	ResponseBodyIgnorer = abi.ResponseBodyIgnorer
	// TcpContext is one TCP stream (ABI callbacks exported; Meshwarden's
	// filters are HTTP filters).
	TcpContext = types.TcpContext

	// DefaultVMContext is a VMContext whose OnVMStart succeeds; embed it.
	DefaultVMContext = types.DefaultVMContext
	// DefaultPluginContext is a no-op PluginContext; embed it.
	DefaultPluginContext = types.DefaultPluginContext
	// DefaultHttpContext is an HttpContext that continues every event; embed it.
	DefaultHttpContext = types.DefaultHttpContext //nolint:revive // SDK name.
	// DefaultTcpContext is a TcpContext that continues every event; embed it.
	DefaultTcpContext = types.DefaultTcpContext

	// Action tells the host whether to continue the stream (ActionContinue)
	// or pause it (ActionPause) after a callback.
	Action = types.Action
	// OnVMStartStatus is returned by VMContext.OnVMStart.
	OnVMStartStatus = types.OnVMStartStatus
	// OnPluginStartStatus is returned by PluginContext.OnPluginStart.
	OnPluginStartStatus = types.OnPluginStartStatus
)

// Actions and start statuses, as in the SDK's types package.
const (
	ActionContinue            = types.ActionContinue
	ActionPause               = types.ActionPause
	OnVMStartStatusOK         = types.OnVMStartStatusOK
	OnVMStartStatusFailed     = types.OnVMStartStatusFailed
	OnPluginStartStatusOK     = types.OnPluginStartStatusOK
	OnPluginStartStatusFailed = types.OnPluginStartStatusFailed
)

// Errors returned by hostcalls. Compare with errors.Is; the first six are the
// SDK's types.Error* values.
var (
	ErrNotFound            = types.ErrorStatusNotFound
	ErrBadArgument         = types.ErrorStatusBadArgument
	ErrEmpty               = types.ErrorStatusEmpty
	ErrCasMismatch         = types.ErrorStatusCasMismatch
	ErrInternalFailure     = types.ErrorInternalFailure
	ErrUnimplemented       = types.ErrorUnimplemented
	ErrSerializationFailed = abi.ErrSerializationFailed
	ErrParseFailure        = abi.ErrParseFailure
	ErrInvalidMemoryAccess = abi.ErrInvalidMemoryAccess
)
