package abi

// unsetHost answers every hostcall with StatusInternalFailure. It is the host
// of a State created with NewState(nil), so a filter's code run outside a
// host fails with an error instead of a nil dereference.
type unsetHost struct{}

var _ Host = unsetHost{}

func (unsetHost) Log(LogLevel, string) Status                 { return StatusInternalFailure }
func (unsetHost) GetLogLevel() (LogLevel, Status)             { return 0, StatusInternalFailure }
func (unsetHost) GetCurrentTimeNanoseconds() (uint64, Status) { return 0, StatusInternalFailure }
func (unsetHost) SetTickPeriodMilliseconds(uint32) Status     { return StatusInternalFailure }
func (unsetHost) SetEffectiveContext(uint32) Status           { return StatusInternalFailure }
func (unsetHost) Done() Status                                { return StatusInternalFailure }
func (unsetHost) GetProperty([]byte) ([]byte, Status)         { return nil, StatusInternalFailure }
func (unsetHost) SetProperty(_, _ []byte) Status              { return StatusInternalFailure }
func (unsetHost) GetBufferBytes(BufferType, int, int) ([]byte, Status) {
	return nil, StatusInternalFailure
}
func (unsetHost) GetBufferStatus(BufferType) (int, Status)           { return 0, StatusInternalFailure }
func (unsetHost) SetBufferBytes(BufferType, int, int, []byte) Status { return StatusInternalFailure }
func (unsetHost) GetHeaderMapValue(MapType, string) (string, Status) {
	return "", StatusInternalFailure
}
func (unsetHost) GetHeaderMapPairs(MapType) ([]byte, Status)       { return nil, StatusInternalFailure }
func (unsetHost) SetHeaderMapPairs(MapType, []byte) Status         { return StatusInternalFailure }
func (unsetHost) AddHeaderMapValue(MapType, string, string) Status { return StatusInternalFailure }
func (unsetHost) ReplaceHeaderMapValue(MapType, string, string) Status {
	return StatusInternalFailure
}
func (unsetHost) RemoveHeaderMapValue(MapType, string) Status { return StatusInternalFailure }
func (unsetHost) GetHeaderMapSize(MapType) (int, Status)      { return 0, StatusInternalFailure }
func (unsetHost) SendLocalResponse(uint32, string, []byte, []byte, int32) Status {
	return StatusInternalFailure
}
func (unsetHost) ContinueStream(StreamType) Status { return StatusInternalFailure }
func (unsetHost) CloseStream(StreamType) Status    { return StatusInternalFailure }
func (unsetHost) HTTPCall(string, []byte, []byte, []byte, uint32) (uint32, Status) {
	return 0, StatusInternalFailure
}
func (unsetHost) GetSharedData(string) ([]byte, uint32, Status)      { return nil, 0, StatusInternalFailure }
func (unsetHost) SetSharedData(string, []byte, uint32) Status        { return StatusInternalFailure }
func (unsetHost) RegisterSharedQueue(string) (uint32, Status)        { return 0, StatusInternalFailure }
func (unsetHost) ResolveSharedQueue(string, string) (uint32, Status) { return 0, StatusInternalFailure }
func (unsetHost) EnqueueSharedQueue(uint32, []byte) Status           { return StatusInternalFailure }
func (unsetHost) DequeueSharedQueue(uint32) ([]byte, Status)         { return nil, StatusInternalFailure }
func (unsetHost) DefineMetric(MetricType, string) (uint32, Status)   { return 0, StatusInternalFailure }
func (unsetHost) IncrementMetric(uint32, int64) Status               { return StatusInternalFailure }
func (unsetHost) RecordMetric(uint32, uint64) Status                 { return StatusInternalFailure }
func (unsetHost) GetMetric(uint32) (uint64, Status)                  { return 0, StatusInternalFailure }
func (unsetHost) CallForeignFunction(string, []byte) ([]byte, Status) {
	return nil, StatusInternalFailure
}
