//go:build wasip1

package abi

// The hostcalls of ABI 0.2.1, imported from module "env". Pointers cross the
// boundary as uint32 addresses into linear memory.

//go:wasmimport env proxy_log
func proxyLog(level, msgPtr, msgSize uint32) uint32

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(retLevel uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(retTime uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(ms uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(contextID uint32) uint32

//go:wasmimport env proxy_done
func proxyDone() uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(pathPtr, pathSize, retPtr, retSize uint32) uint32

//go:wasmimport env proxy_set_property
func proxySetProperty(pathPtr, pathSize, valuePtr, valueSize uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bt, start, maxSize, retPtr, retSize uint32) uint32

//go:wasmimport env proxy_get_buffer_status
func proxyGetBufferStatus(bt, retSize, retFlags uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(bt, start, size, valuePtr, valueSize uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mt, keyPtr, keySize, retPtr, retSize uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mt, retPtr, retSize uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxySetHeaderMapPairs(mt, mapPtr, mapSize uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mt, keyPtr, keySize, valuePtr, valueSize uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(mt, keyPtr, keySize, valuePtr, valueSize uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(mt, keyPtr, keySize uint32) uint32

//go:wasmimport env proxy_get_header_map_size
func proxyGetHeaderMapSize(mt, retSize uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(statusCode, detailsPtr, detailsSize, bodyPtr, bodySize, headersPtr, headersSize uint32, grpcStatus int32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(st uint32) uint32

//go:wasmimport env proxy_close_stream
func proxyCloseStream(st uint32) uint32

//go:wasmimport env proxy_http_call
func proxyHTTPCall(upPtr, upSize, hPtr, hSize, bPtr, bSize, tPtr, tSize, timeoutMs, retToken uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(keyPtr, keySize, retPtr, retSize, retCas uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(keyPtr, keySize, valuePtr, valueSize, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(namePtr, nameSize, retID uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxyResolveSharedQueue(vmPtr, vmSize, namePtr, nameSize, retID uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(queueID, valuePtr, valueSize uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(queueID, retPtr, retSize uint32) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(mt, namePtr, nameSize, retID uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(metricID uint32, delta int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(metricID uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(metricID, retValue uint32) uint32

//go:wasmimport env proxy_call_foreign_function
func proxyCallForeignFunction(namePtr, nameSize, argsPtr, argsSize, retPtr, retSize uint32) uint32
