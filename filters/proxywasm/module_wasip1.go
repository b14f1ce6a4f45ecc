//go:build wasip1

// The wrappers below mirror the methods of VM one for one (a test under
// GOOS=wasip1 vet keeps them in step: see TestModuleWrappersMatchVM).

package proxywasm

import (
	"time"

	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
)

// ModuleVM returns the VM of this wasm module: a module is one VM.
func ModuleVM() *VM { return (*VM)(abi.Module()) }

// SetVMContext installs the filter's VM context in this wasm module. Call it
// from an init function of the filter's main package: a c-shared module runs
// init (in _initialize) but never main. The host's first callback
// (proxy_on_context_create for the plugin context) needs it. A filter that
// also runs natively builds its context from ModuleVM():
//
//	func init() { proxywasm.SetVMContext(dye.NewVMContext(proxywasm.ModuleVM())) }
func SetVMContext(ctx VMContext) { abi.Module().SetVMContext(ctx) }

// The package-level hostcalls of the proxy-wasm Go SDK, for filters that run
// only as wasm: each calls the method of the same name on ModuleVM(). A
// native build has no module VM, so it has none of these.

// GetVMConfiguration calls ModuleVM().GetVMConfiguration.
func GetVMConfiguration() ([]byte, error) { return ModuleVM().GetVMConfiguration() }

// GetPluginConfiguration calls ModuleVM().GetPluginConfiguration.
func GetPluginConfiguration() ([]byte, error) { return ModuleVM().GetPluginConfiguration() }

// SetTickPeriodMilliSeconds calls ModuleVM().SetTickPeriodMilliSeconds.
func SetTickPeriodMilliSeconds(millSec uint32) error {
	return ModuleVM().SetTickPeriodMilliSeconds(millSec)
}

// SetEffectiveContext calls ModuleVM().SetEffectiveContext.
func SetEffectiveContext(contextID uint32) error { return ModuleVM().SetEffectiveContext(contextID) }

// PluginDone calls ModuleVM().PluginDone.
func PluginDone() error { return ModuleVM().PluginDone() }

// GetCurrentTime calls ModuleVM().GetCurrentTime.
func GetCurrentTime() time.Time { return ModuleVM().GetCurrentTime() }

// GetHttpRequestHeaders calls ModuleVM().GetHttpRequestHeaders.
func GetHttpRequestHeaders() ([][2]string, error) { return ModuleVM().GetHttpRequestHeaders() }

// AppendHttpRequestHeaders calls ModuleVM().AppendHttpRequestHeaders.
func AppendHttpRequestHeaders(dst [][2]string) ([][2]string, error) {
	return ModuleVM().AppendHttpRequestHeaders(dst)
}

// ReplaceHttpRequestHeaders calls ModuleVM().ReplaceHttpRequestHeaders.
func ReplaceHttpRequestHeaders(headers [][2]string) error {
	return ModuleVM().ReplaceHttpRequestHeaders(headers)
}

// GetHttpRequestHeader calls ModuleVM().GetHttpRequestHeader.
func GetHttpRequestHeader(key string) (string, error) { return ModuleVM().GetHttpRequestHeader(key) }

// RemoveHttpRequestHeader calls ModuleVM().RemoveHttpRequestHeader.
func RemoveHttpRequestHeader(key string) error { return ModuleVM().RemoveHttpRequestHeader(key) }

// ReplaceHttpRequestHeader calls ModuleVM().ReplaceHttpRequestHeader.
func ReplaceHttpRequestHeader(key, value string) error {
	return ModuleVM().ReplaceHttpRequestHeader(key, value)
}

// AddHttpRequestHeader calls ModuleVM().AddHttpRequestHeader.
func AddHttpRequestHeader(key, value string) error {
	return ModuleVM().AddHttpRequestHeader(key, value)
}

// GetHttpRequestBody calls ModuleVM().GetHttpRequestBody.
func GetHttpRequestBody(start, maxSize int) ([]byte, error) {
	return ModuleVM().GetHttpRequestBody(start, maxSize)
}

// AppendHttpRequestBody calls ModuleVM().AppendHttpRequestBody.
func AppendHttpRequestBody(data []byte) error { return ModuleVM().AppendHttpRequestBody(data) }

// PrependHttpRequestBody calls ModuleVM().PrependHttpRequestBody.
func PrependHttpRequestBody(data []byte) error { return ModuleVM().PrependHttpRequestBody(data) }

// ReplaceHttpRequestBody calls ModuleVM().ReplaceHttpRequestBody.
func ReplaceHttpRequestBody(data []byte) error { return ModuleVM().ReplaceHttpRequestBody(data) }

// GetHttpRequestTrailers calls ModuleVM().GetHttpRequestTrailers.
func GetHttpRequestTrailers() ([][2]string, error) { return ModuleVM().GetHttpRequestTrailers() }

// ReplaceHttpRequestTrailers calls ModuleVM().ReplaceHttpRequestTrailers.
func ReplaceHttpRequestTrailers(trailers [][2]string) error {
	return ModuleVM().ReplaceHttpRequestTrailers(trailers)
}

// GetHttpRequestTrailer calls ModuleVM().GetHttpRequestTrailer.
func GetHttpRequestTrailer(key string) (string, error) { return ModuleVM().GetHttpRequestTrailer(key) }

// RemoveHttpRequestTrailer calls ModuleVM().RemoveHttpRequestTrailer.
func RemoveHttpRequestTrailer(key string) error { return ModuleVM().RemoveHttpRequestTrailer(key) }

// ReplaceHttpRequestTrailer calls ModuleVM().ReplaceHttpRequestTrailer.
func ReplaceHttpRequestTrailer(key, value string) error {
	return ModuleVM().ReplaceHttpRequestTrailer(key, value)
}

// AddHttpRequestTrailer calls ModuleVM().AddHttpRequestTrailer.
func AddHttpRequestTrailer(key, value string) error {
	return ModuleVM().AddHttpRequestTrailer(key, value)
}

// ResumeHttpRequest calls ModuleVM().ResumeHttpRequest.
func ResumeHttpRequest() error { return ModuleVM().ResumeHttpRequest() }

// CloseHttpRequest calls ModuleVM().CloseHttpRequest.
func CloseHttpRequest() error { return ModuleVM().CloseHttpRequest() }

// GetHttpResponseHeaders calls ModuleVM().GetHttpResponseHeaders.
func GetHttpResponseHeaders() ([][2]string, error) { return ModuleVM().GetHttpResponseHeaders() }

// ReplaceHttpResponseHeaders calls ModuleVM().ReplaceHttpResponseHeaders.
func ReplaceHttpResponseHeaders(headers [][2]string) error {
	return ModuleVM().ReplaceHttpResponseHeaders(headers)
}

// GetHttpResponseHeader calls ModuleVM().GetHttpResponseHeader.
func GetHttpResponseHeader(key string) (string, error) { return ModuleVM().GetHttpResponseHeader(key) }

// RemoveHttpResponseHeader calls ModuleVM().RemoveHttpResponseHeader.
func RemoveHttpResponseHeader(key string) error { return ModuleVM().RemoveHttpResponseHeader(key) }

// ReplaceHttpResponseHeader calls ModuleVM().ReplaceHttpResponseHeader.
func ReplaceHttpResponseHeader(key, value string) error {
	return ModuleVM().ReplaceHttpResponseHeader(key, value)
}

// AddHttpResponseHeader calls ModuleVM().AddHttpResponseHeader.
func AddHttpResponseHeader(key, value string) error {
	return ModuleVM().AddHttpResponseHeader(key, value)
}

// GetHttpResponseBody calls ModuleVM().GetHttpResponseBody.
func GetHttpResponseBody(start, maxSize int) ([]byte, error) {
	return ModuleVM().GetHttpResponseBody(start, maxSize)
}

// AppendHttpResponseBody calls ModuleVM().AppendHttpResponseBody.
func AppendHttpResponseBody(data []byte) error { return ModuleVM().AppendHttpResponseBody(data) }

// PrependHttpResponseBody calls ModuleVM().PrependHttpResponseBody.
func PrependHttpResponseBody(data []byte) error { return ModuleVM().PrependHttpResponseBody(data) }

// ReplaceHttpResponseBody calls ModuleVM().ReplaceHttpResponseBody.
func ReplaceHttpResponseBody(data []byte) error { return ModuleVM().ReplaceHttpResponseBody(data) }

// GetHttpResponseTrailers calls ModuleVM().GetHttpResponseTrailers.
func GetHttpResponseTrailers() ([][2]string, error) { return ModuleVM().GetHttpResponseTrailers() }

// ReplaceHttpResponseTrailers calls ModuleVM().ReplaceHttpResponseTrailers.
func ReplaceHttpResponseTrailers(trailers [][2]string) error {
	return ModuleVM().ReplaceHttpResponseTrailers(trailers)
}

// GetHttpResponseTrailer calls ModuleVM().GetHttpResponseTrailer.
func GetHttpResponseTrailer(key string) (string, error) {
	return ModuleVM().GetHttpResponseTrailer(key)
}

// RemoveHttpResponseTrailer calls ModuleVM().RemoveHttpResponseTrailer.
func RemoveHttpResponseTrailer(key string) error { return ModuleVM().RemoveHttpResponseTrailer(key) }

// ReplaceHttpResponseTrailer calls ModuleVM().ReplaceHttpResponseTrailer.
func ReplaceHttpResponseTrailer(key, value string) error {
	return ModuleVM().ReplaceHttpResponseTrailer(key, value)
}

// AddHttpResponseTrailer calls ModuleVM().AddHttpResponseTrailer.
func AddHttpResponseTrailer(key, value string) error {
	return ModuleVM().AddHttpResponseTrailer(key, value)
}

// ResumeHttpResponse calls ModuleVM().ResumeHttpResponse.
func ResumeHttpResponse() error { return ModuleVM().ResumeHttpResponse() }

// CloseHttpResponse calls ModuleVM().CloseHttpResponse.
func CloseHttpResponse() error { return ModuleVM().CloseHttpResponse() }

// SendHttpResponse calls ModuleVM().SendHttpResponse.
func SendHttpResponse(statusCode uint32, headers [][2]string, body []byte, gRPCStatus int32) error {
	return ModuleVM().SendHttpResponse(statusCode, headers, body, gRPCStatus)
}

// GetHttpCallResponseHeaders calls ModuleVM().GetHttpCallResponseHeaders.
func GetHttpCallResponseHeaders() ([][2]string, error) {
	return ModuleVM().GetHttpCallResponseHeaders()
}

// GetHttpCallResponseBody calls ModuleVM().GetHttpCallResponseBody.
func GetHttpCallResponseBody(start, maxSize int) ([]byte, error) {
	return ModuleVM().GetHttpCallResponseBody(start, maxSize)
}

// GetHttpCallResponseTrailers calls ModuleVM().GetHttpCallResponseTrailers.
func GetHttpCallResponseTrailers() ([][2]string, error) {
	return ModuleVM().GetHttpCallResponseTrailers()
}

// GetProperty calls ModuleVM().GetProperty.
func GetProperty(path []string) ([]byte, error) { return ModuleVM().GetProperty(path) }

// GetPropertyString calls ModuleVM().GetPropertyString.
func GetPropertyString(path []string) (string, error) { return ModuleVM().GetPropertyString(path) }

// GetPropertyMap calls ModuleVM().GetPropertyMap.
func GetPropertyMap(path []string) ([][2]string, error) { return ModuleVM().GetPropertyMap(path) }

// SetProperty calls ModuleVM().SetProperty.
func SetProperty(path []string, data []byte) error { return ModuleVM().SetProperty(path, data) }

// ArenaString calls ModuleVM().ArenaString.
func ArenaString(b []byte) string { return ModuleVM().ArenaString(b) }

// GetSharedData calls ModuleVM().GetSharedData.
func GetSharedData(key string) (value []byte, cas uint32, err error) {
	return ModuleVM().GetSharedData(key)
}

// SetSharedData calls ModuleVM().SetSharedData.
func SetSharedData(key string, data []byte, cas uint32) error {
	return ModuleVM().SetSharedData(key, data, cas)
}

// RegisterSharedQueue calls ModuleVM().RegisterSharedQueue.
func RegisterSharedQueue(name string) (queueID uint32, err error) {
	return ModuleVM().RegisterSharedQueue(name)
}

// ResolveSharedQueue calls ModuleVM().ResolveSharedQueue.
func ResolveSharedQueue(vmID, queueName string) (queueID uint32, err error) {
	return ModuleVM().ResolveSharedQueue(vmID, queueName)
}

// EnqueueSharedQueue calls ModuleVM().EnqueueSharedQueue.
func EnqueueSharedQueue(queueID uint32, data []byte) error {
	return ModuleVM().EnqueueSharedQueue(queueID, data)
}

// DequeueSharedQueue calls ModuleVM().DequeueSharedQueue.
func DequeueSharedQueue(queueID uint32) ([]byte, error) {
	return ModuleVM().DequeueSharedQueue(queueID)
}

// CallForeignFunction calls ModuleVM().CallForeignFunction.
func CallForeignFunction(funcName string, param []byte) (ret []byte, err error) {
	return ModuleVM().CallForeignFunction(funcName, param)
}

// GetLogLevel calls ModuleVM().GetLogLevel.
func GetLogLevel() (LogLevel, error) { return ModuleVM().GetLogLevel() }

// LogTrace calls ModuleVM().LogTrace.
func LogTrace(msg string) { ModuleVM().LogTrace(msg) }

// LogTracef calls ModuleVM().LogTracef.
func LogTracef(format string, args ...any) { ModuleVM().LogTracef(format, args...) }

// LogDebug calls ModuleVM().LogDebug.
func LogDebug(msg string) { ModuleVM().LogDebug(msg) }

// LogDebugf calls ModuleVM().LogDebugf.
func LogDebugf(format string, args ...any) { ModuleVM().LogDebugf(format, args...) }

// LogInfo calls ModuleVM().LogInfo.
func LogInfo(msg string) { ModuleVM().LogInfo(msg) }

// LogInfof calls ModuleVM().LogInfof.
func LogInfof(format string, args ...any) { ModuleVM().LogInfof(format, args...) }

// LogWarn calls ModuleVM().LogWarn.
func LogWarn(msg string) { ModuleVM().LogWarn(msg) }

// LogWarnf calls ModuleVM().LogWarnf.
func LogWarnf(format string, args ...any) { ModuleVM().LogWarnf(format, args...) }

// LogError calls ModuleVM().LogError.
func LogError(msg string) { ModuleVM().LogError(msg) }

// LogErrorf calls ModuleVM().LogErrorf.
func LogErrorf(format string, args ...any) { ModuleVM().LogErrorf(format, args...) }

// LogCritical calls ModuleVM().LogCritical.
func LogCritical(msg string) { ModuleVM().LogCritical(msg) }

// LogCriticalf calls ModuleVM().LogCriticalf.
func LogCriticalf(format string, args ...any) { ModuleVM().LogCriticalf(format, args...) }

// DefineCounterMetric calls ModuleVM().DefineCounterMetric.
func DefineCounterMetric(name string) MetricCounter { return ModuleVM().DefineCounterMetric(name) }

// DefineCounterMetricErr calls ModuleVM().DefineCounterMetricErr.
func DefineCounterMetricErr(name string) (MetricCounter, error) {
	return ModuleVM().DefineCounterMetricErr(name)
}

// DefineGaugeMetric calls ModuleVM().DefineGaugeMetric.
func DefineGaugeMetric(name string) MetricGauge { return ModuleVM().DefineGaugeMetric(name) }

// DefineGaugeMetricErr calls ModuleVM().DefineGaugeMetricErr.
func DefineGaugeMetricErr(name string) (MetricGauge, error) {
	return ModuleVM().DefineGaugeMetricErr(name)
}

// DefineHistogramMetric calls ModuleVM().DefineHistogramMetric.
func DefineHistogramMetric(name string) MetricHistogram {
	return ModuleVM().DefineHistogramMetric(name)
}

// DefineHistogramMetricErr calls ModuleVM().DefineHistogramMetricErr.
func DefineHistogramMetricErr(name string) (MetricHistogram, error) {
	return ModuleVM().DefineHistogramMetricErr(name)
}

// DispatchHttpCall calls ModuleVM().DispatchHttpCall.
func DispatchHttpCall(cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMillisecond uint32, callBack func(numHeaders, bodySize, numTrailers int),
) (calloutID uint32, err error) {
	return ModuleVM().DispatchHttpCall(cluster, headers, body, trailers, timeoutMillisecond, callBack)
}

// DispatchPluginHttpCall calls ModuleVM().DispatchPluginHttpCall.
func DispatchPluginHttpCall(cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMillisecond uint32, callBack func(numHeaders, bodySize, numTrailers int),
) (calloutID uint32, err error) {
	return ModuleVM().DispatchPluginHttpCall(cluster, headers, body, trailers, timeoutMillisecond, callBack)
}
