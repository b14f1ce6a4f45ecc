package kit

import "github.com/meshwarden/meshwarden/filters/proxywasm"

// HostRequest is the request of the stream being handled, as the filters'
// engines see it: the headers are read with one hostcall (Load) and looked
// up locally; writes go to the host and to the local copy. A plugin context
// keeps one and reloads it per stream (one stream at a time: the guest is
// single-threaded and a callback never yields).
type HostRequest struct {
	// Filter names the filter in log lines.
	Filter string
	// VM is the VM of the plugin context that keeps the request.
	VM   *proxywasm.VM
	hs   [][2]string
	vals []string // Values' result, reused
}

// Load reads the current stream's request headers into r and returns r.
// The pairs reuse the previous stream's slice: a request allocates none.
func (r *HostRequest) Load() *HostRequest {
	clear(r.hs)
	r.hs, _ = r.VM.AppendHttpRequestHeaders(r.hs[:0])
	return r
}

// Header returns the first line of a header; a line emptied by SetHeader or
// RemoveHeader counts as absent.
func (r *HostRequest) Header(name string) (string, bool) {
	if i := Lookup(r.hs, name); i >= 0 {
		return r.hs[i][1], r.hs[i][1] != ""
	}
	return "", false
}

// Lookup returns the index of the first pair of hs named name, or -1. It
// compares lengths and last bytes before the names (in the wasm guest a
// string comparison is a call): most names differ there.
func Lookup(hs [][2]string, name string) int {
	if name == "" {
		for i := range hs {
			if hs[i][0] == "" {
				return i
			}
		}
		return -1
	}
	last := name[len(name)-1]
	for i := range hs {
		if k := hs[i][0]; len(k) == len(name) && k[len(k)-1] == last && k == name {
			return i
		}
	}
	return -1
}

// Values returns every non-empty line of a header, in order. The slice is
// r's own and valid until the next call of Values (no allocation per call).
func (r *HostRequest) Values(name string) []string {
	if len(r.vals) > 0 {
		clear(r.vals)
		r.vals = r.vals[:0]
	}
	for _, h := range r.hs {
		if h[0] == name && h[1] != "" {
			r.vals = append(r.vals, h[1])
		}
	}
	if len(r.vals) == 0 {
		return nil
	}
	return r.vals
}

// SetHeader replaces every line of a header with one.
func (r *HostRequest) SetHeader(name, value string) {
	if err := r.VM.ReplaceHttpRequestHeader(name, value); err != nil {
		r.VM.LogErrorf("%s: cannot set header %s: %v", r.Filter, name, err)
		return
	}
	set := false
	for i := range r.hs {
		if r.hs[i][0] == name {
			if set { // the host replaced every line with one
				r.hs[i][1] = ""
				continue
			}
			r.hs[i][1], set = value, true
		}
	}
	if !set {
		r.hs = append(r.hs, [2]string{name, value})
	}
}

// SetHeaderBytes is SetHeader with the value as bytes, copied into the
// VM's arena (VM.ArenaString) rather than a Go allocation.
func (r *HostRequest) SetHeaderBytes(name string, value []byte) {
	r.SetHeader(name, r.VM.ArenaString(value))
}

// SetHeaderBytes sets a header of req to value: without an allocation
// when req is a *HostRequest, else as a string. (A concrete type, not an
// interface method: value, often the caller's stack buffer, then stays on
// the stack.)
func SetHeaderBytes(req interface{ SetHeader(name, value string) }, name string, value []byte) {
	if r, ok := req.(*HostRequest); ok {
		r.SetHeaderBytes(name, value)
		return
	}
	req.SetHeader(name, string(value))
}

// RemoveHeader removes every line of a header.
func (r *HostRequest) RemoveHeader(name string) {
	if _, ok := r.Header(name); !ok {
		return
	}
	_ = r.VM.RemoveHttpRequestHeader(name)
	for i := range r.hs {
		if r.hs[i][0] == name {
			r.hs[i][1] = ""
		}
	}
}
