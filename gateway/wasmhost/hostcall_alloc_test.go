package wasmhost

import (
	"context"
	"encoding/binary"
	"testing"
	"time"
)

// scratchAlloc is a guest allocator over a nativeMemory: the guest's side
// of a hostcall that returns data, without a module.
type scratchAlloc struct{ mem *nativeMemory }

func (a scratchAlloc) CallWithStack(_ context.Context, s []uint64) error {
	s[0] = uint64(a.mem.alloc(int(s[0])))
	return nil
}

// hostcallRig is an instance whose memory is a nativeMemory, in the HTTP
// context of a stream, for calling hostFuncs directly.
type hostcallRig struct {
	in  *instance
	mem *nativeMemory
	s   *Stream
}

func newHostcallRig(tb testing.TB) *hostcallRig {
	tb.Helper()
	r := newRuntime(tb, RuntimeConfig{})
	p := newPlugin(tb, r, "noop", PluginConfig{Name: "rig", PoolSize: 1})
	in := newInstanceState(p)
	tb.Cleanup(in.cancel)
	mem := &nativeMemory{buf: make([]byte, nativeMemoryBase, 1<<16)}
	in.mem, in.f.alloc = mem, scratchAlloc{mem}
	s := &Stream{p: p, in: in, id: 2, startTime: time.Unix(0, 12345), info: StreamInfo{
		SourceAddress: "10.1.2.3:4000", PeerURISAN: "spiffe://bank.example/ns/mesh/sa/gw", MTLS: true,
		RouteName: "accounts",
	}}
	s.reqHeaders = reqHeaders("x-request-id", "r-1", "traceparent", "00-abc")
	in.setContext(s.id, s)
	return &hostcallRig{in: in, mem: mem, s: s}
}

// getProperty calls proxy_get_property with path and returns the value.
func (g *hostcallRig) getProperty(path string) ([]byte, status) {
	g.mem.reset()
	pp, ps := g.mem.putString(path)
	out := g.mem.alloc(8)
	st := proxyGetProperty(g.in, []uint64{pp, ps, uint64(out), uint64(out + 4)})
	if st != statusOK {
		return nil, st
	}
	ptr := binary.LittleEndian.Uint32(g.mem.buf[out:])
	size := binary.LittleEndian.Uint32(g.mem.buf[out+4:])
	return g.mem.buf[ptr : ptr+size], st
}

// TestGetPropertyNoAlloc: proxy_get_property answers the properties the
// bundled filters read on every request (the stream's info, headers,
// numbers, the plugin's own) without allocating on the host, and with the
// values Envoy gives.
func TestGetPropertyNoAlloc(t *testing.T) {
	g := newHostcallRig(t)
	le := func(v uint64) string { return string(binary.LittleEndian.AppendUint64(nil, v)) }
	for _, tc := range []struct{ path, want string }{
		{"connection\x00uri_san_peer_certificate", "spiffe://bank.example/ns/mesh/sa/gw"},
		{"source\x00address", "10.1.2.3:4000"},
		{"source\x00port", le(4000)},
		{"connection\x00mtls", "\x01"},
		{"route_name\x00", "accounts"},
		{"request\x00time", le(12345)},
		{"request\x00id", "r-1"},
		{"request\x00headers\x00traceparent", "00-abc"},
		{"request\x00url_path", "/p"},
		{"plugin_name", "rig"},
	} {
		got, st := g.getProperty(tc.path)
		if st != statusOK || string(got) != tc.want {
			t.Errorf("%q = %q (%v), want %q", tc.path, got, st, tc.want)
			continue
		}
		if n := testing.AllocsPerRun(50, func() { g.getProperty(tc.path) }); n != 0 {
			t.Errorf("%q: %v allocations per call, want 0", tc.path, n)
		}
	}
	if _, st := g.getProperty("no\x00such"); st != statusNotFound {
		t.Errorf("unknown property: %v, want NotFound", st)
	}
}

// TestReplaceHeaderValueKeyReuse: proxy_replace_header_map_value of a key
// the map holds allocates only the new value; a key in another case is
// lowercased, and a new key is appended, as before.
func TestReplaceHeaderValueKeyReuse(t *testing.T) {
	g := newHostcallRig(t)
	replace := func(k, v string) status {
		g.mem.reset()
		kp, ks := g.mem.putString(k)
		vp, vs := g.mem.putString(v)
		return proxyReplaceHeaderMapValue(g.in, []uint64{uint64(mapRequestHeaders), kp, ks, vp, vs})
	}
	if n := testing.AllocsPerRun(50, func() { replace("traceparent", "00-def") }); n > 1 {
		t.Errorf("replacing a present key: %v allocations, want at most 1 (the value)", n)
	}
	if st := replace("X-Request-ID", "r-2"); st != statusOK {
		t.Fatal(st)
	}
	if st := replace("x-new", "n"); st != statusOK {
		t.Fatal(st)
	}
	h := g.s.reqHeaders
	if v, _ := h.Get("traceparent"); v != "00-def" {
		t.Errorf("traceparent = %q", v)
	}
	if got := h.Pairs[len(h.Pairs)-3]; got != [2]string{"x-request-id", "r-2"} {
		t.Errorf("replaced pair %q, want it lowercased in place", got)
	}
	if got := h.Pairs[len(h.Pairs)-1]; got != [2]string{"x-new", "n"} {
		t.Errorf("added pair %q", got)
	}
}

// BenchmarkHostcalls measures the host side of the hostcalls a request
// through the bundled filters makes most, against a scratch memory (no
// module): the host's share without wazero's.
func BenchmarkHostcalls(b *testing.B) {
	g := newHostcallRig(b)
	for _, path := range []string{"connection\x00uri_san_peer_certificate", "connection\x00mtls"} {
		b.Run("get_property/"+path[:10], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, st := g.getProperty(path); st != statusOK {
					b.Fatal(st)
				}
			}
		})
	}
	b.Run("replace_header_map_value", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			g.mem.reset()
			kp, ks := g.mem.putString("traceparent")
			vp, vs := g.mem.putString("00-def")
			if st := proxyReplaceHeaderMapValue(g.in, []uint64{uint64(mapRequestHeaders), kp, ks, vp, vs}); st != statusOK {
				b.Fatal(st)
			}
		}
	})
}
