//go:build wasip1

// Command edges probes the proxy-wasm-cpp-host edge cases of the
// conformance table in gateway/wasmhost/README.md: every probe's status
// code (and what was written) comes back as a request header x-e-<probe>.
// The same module runs in wazero (gateway/wasmhost) and in V8 with Envoy's
// semantics (filters/internal/v8host); both compare it with
// testdata/edges.tsv. Send the request with two x-rep header lines.
package main

import (
	"strconv"
	"unsafe"

	g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"
)

func main() {}

var atConfigure [][2]string

func put(list *[][2]string, name string, st uint32, detail ...string) {
	v := strconv.FormatUint(uint64(st), 10)
	for _, d := range detail {
		v += ":" + d
	}
	*list = append(*list, [2]string{name, v})
}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 { return 1 }

var slotP, slotN uint32

func addr(p *uint32) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

// onConfigure runs with an empty plugin configuration.
//
//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	g.Unpin()
	// An empty read: Ok, and the guest's pointer and size are left as they were.
	slotP, slotN = 0xdead, 0xbeef
	st := g.ProxyGetBufferBytes(g.PluginConfig, 0, 16, addr(&slotP), addr(&slotN))
	written := "untouched"
	if slotP != 0xdead || slotN != 0xbeef {
		written = "written"
	}
	put(&atConfigure, "buffer-empty-read", st, written)
	n, st := g.BufferLen(g.PluginConfig)
	put(&atConfigure, "buffer-empty-status", st, strconv.FormatUint(uint64(n), 10))
	put(&atConfigure, "buffer-bad-type", g.ProxyGetBufferBytes(99, 0, 16, addr(&slotP), addr(&slotN)))
	return 1
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	out := append([][2]string(nil), atConfigure...)
	_, st := g.Property("no", "such", "property")
	put(&out, "property-missing", st)
	v, st := g.Property("plugin_root_id")
	put(&out, "property-root-id", st, string(v))
	_, st = g.Header(g.RequestHeaders, "x-missing")
	put(&out, "header-missing", st)
	v2, st := g.Header(g.RequestHeaders, "x-rep")
	put(&out, "header-repeated-get", st, v2)
	pairs, st := g.Pairs(g.RequestHeaders)
	reps := 0
	for _, p := range pairs {
		if p[0] == "x-rep" {
			reps++
		}
	}
	put(&out, "header-repeated-pairs", st, strconv.Itoa(reps))
	put(&out, "header-remove-missing", g.RemoveHeader(g.RequestHeaders, "x-missing"))
	_, st = g.Header(99, "x-rep")
	put(&out, "header-bad-map", st)
	put(&out, "log-bad-level", g.Log(9, "bad level"))
	put(&out, "effective-context-unknown", g.SetEffectiveContext(999))
	_, _, st = g.SharedData("no-such-key")
	put(&out, "shared-data-missing", st)
	_, st = g.ResolveQueue("", "no-such-queue")
	put(&out, "queue-unknown", st)
	q, _ := g.RegisterQueue("edges-q")
	_, st = g.Dequeue(q)
	put(&out, "queue-empty", st)
	put(&out, "metric-unknown", g.IncrementMetric(0xfff0, 1))
	_, st = g.HTTPCall("no-such-cluster", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "x"}}, "", 1000)
	put(&out, "http-call-unknown-cluster", st)
	put(&out, "shared-data-cas-new-key", g.SetSharedData("edges-key", "v", 12345))
	put(&out, "shared-data-cas-mismatch", g.SetSharedData("edges-key", "w", 12345))
	put(&out, "queue-enqueue-unknown", g.Enqueue(0xfff0, "x"))
	_, st = g.DefineMetric(9, "edges_bad_type")
	put(&out, "metric-define-bad-type", st)
	counter, _ := g.DefineMetric(0, "edges_counter")
	put(&out, "metric-counter-negative", g.IncrementMetric(counter, -1))
	hist, _ := g.DefineMetric(2, "edges_hist")
	_, st = g.Metric(hist)
	put(&out, "metric-histogram-get", st)
	put(&out, "foreign-function-unknown", g.CallForeign("no_such_function"))
	put(&out, "property-set", g.SetProperty("edges.custom", "v1"))
	v, st = g.Property("edges", "custom")
	put(&out, "property-set-get", st, string(v))
	_, st = g.Now()
	put(&out, "current-time", st)
	// Last: replacing a repeated header leaves one line.
	st = g.ReplaceHeader(g.RequestHeaders, "x-rep", "c")
	pairs, _ = g.Pairs(g.RequestHeaders)
	reps = 0
	for _, p := range pairs {
		if p[0] == "x-rep" {
			reps++
		}
	}
	put(&out, "header-repeated-replace", st, strconv.Itoa(reps))
	for _, kv := range out {
		g.AddHeader(g.RequestHeaders, "x-e-"+kv[0], kv[1])
	}
	return 0
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {}
