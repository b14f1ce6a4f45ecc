//go:build wasip1

// Command hostile is a proxy-wasm 0.2.1 guest that misbehaves on purpose,
// chosen by the request header x-hostile: out-of-bounds pointers, an
// infinite loop, a memory bomb, a trap, a 10k-entry header map.
package main

import (
	"strconv"
	"strings"
	"unsafe"

	g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"
)

func main() {}

var (
	mode = map[uint32]string{}
	hog  [][]byte
)

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) { g.Unpin() }

// Start-up misbehaviour is chosen by the configuration: a VM configuration
// "loop" or "trap" misbehaves in proxy_on_vm_start, a plugin configuration
// "loop" or "trap" in proxy_on_configure.

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 { return startUp(6, size) }

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 { return startUp(7, size) }

func startUp(buffer, size uint32) uint32 {
	if size == 0 {
		return 1
	}
	conf, st := g.Buffer(buffer, 0, size)
	if st != g.OK {
		return 0
	}
	switch string(conf) {
	case "loop":
		return uint32(spin())

	case "trap":
		panic("trap at start-up")
	case "loop-tick":
		tickLoop = true
		g.SetTickPeriod(10)
	case "loop-callout":
		g.HTTPCall("upstream", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "upstream"}}, "", 5000)
	}
	return 1
}

// tickLoop (plugin configuration "loop-tick") makes proxy_on_tick loop.
var tickLoop bool

//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	if tickLoop {
		spin()
	}
}

// proxy_on_http_call_response loops (for the call proxy_on_configure makes
// with the plugin configuration "loop-callout").
//
//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(root, token, nh, bodySize, nt uint32) {
	g.Unpin()
	spin()
}

const bad = 0xFFFFFFF0

func spin() int {
	n := 0
	for {
		n++
		if n < 0 {
			return n
		}
	}
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	m, _ := g.Header(g.RequestHeaders, "x-hostile")
	mode[ctx] = m
	switch m {
	case "oob":
		key := "x-hostile"
		var p, sz uint32
		ps := []uint32{
			g.ProxyLog(2, bad, 100),
			g.ProxyGetHeaderMapValue(0, g.SPtr(key), uint32(len(key)), bad, bad),
			g.ProxyGetHeaderMapValue(0, bad, 9, 0, 0),
			g.ProxyGetHeaderMapPairs(0, bad, bad),
			g.ProxySetHeaderMapPairs(0, bad, 1<<20),
			g.ProxyAddHeaderMapValue(0, g.SPtr(key), uint32(len(key)), bad, 4),
			g.ProxyGetProperty(bad, 4, 0, 0),
			g.ProxyHTTPCall(bad, 10, 0, 0, 0, 0, 0, 0, 100, 0),
			g.ProxySetBufferBytes(0, 0, 0, bad, 100),
			g.ProxyGetBufferBytes(7, 0, 10, bad, 0),
			g.ProxyGetProperty(g.SPtr("plugin_name"), 11, 0xFFFFFFFE, 0),
		}
		_, _ = p, sz
		var out []string
		for _, s := range ps {
			out = append(out, strconv.Itoa(int(s)))
		}
		g.AddHeader(g.RequestHeaders, "x-oob", strings.Join(out, ","))
	case "emptyread":
		// An empty read answers Ok and writes neither pointer nor size,
		// as proxy-wasm-cpp-host does: the sentinels must survive.
		p, sz := uint32(0xDEAD), uint32(0xBEEF)
		st := g.ProxyGetBufferBytes(6, 0, 10, uint32(uintptr(unsafe.Pointer(&p))), uint32(uintptr(unsafe.Pointer(&sz))))
		g.AddHeader(g.RequestHeaders, "x-emptyread", strconv.Itoa(int(st))+","+strconv.FormatUint(uint64(p), 16)+","+strconv.FormatUint(uint64(sz), 16))
	case "badalloc":
		g.BadAlloc = true
		_, s := g.Pairs(g.RequestHeaders)
		g.BadAlloc = false
		g.AddHeader(g.RequestHeaders, "x-badalloc", strconv.Itoa(int(s)))
	case "loop":
		return uint32(spin())

	case "bomb":
		for {
			hog = append(hog, make([]byte, 8<<20))
		}
	case "trap":
		var m map[string]int
		m["boom"] = 1 // nil map write: a Go panic, which exits the module
	case "headers10k":
		for i := range 10000 {
			g.AddHeader(g.RequestHeaders, "x-h"+strconv.Itoa(i), "v")
		}
	case "pairs10k":
		pairs := make([][2]string, 10000)
		for i := range pairs {
			pairs[i] = [2]string{"x-p" + strconv.Itoa(i), "v"}
		}
		g.SetPairs(g.RequestHeaders, pairs)
	case "reply10k":
		pairs := make([][2]string, 10000)
		for i := range pairs {
			pairs[i] = [2]string{"x-p" + strconv.Itoa(i), "v"}
		}
		g.SendLocalResponse(200, "", "", pairs, -1)
		return 1
	}
	return 0
}

//go:wasmexport proxy_on_request_body
func onRequestBody(ctx, size, eos uint32) uint32 {
	g.Unpin()
	if mode[ctx] == "trap-body" {
		panic("trap mid-request")
	}
	if mode[ctx] == "loop-body" {
		return uint32(spin())
	}
	return 0
}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) { delete(mode, ctx) }
