package wasmhost

import (
	"context"
	"testing"
	"time"
)

// startModule hand-assembles a tiny non-Go guest, the shape C/Rust SDKs
// produce: it exports memory, a bump "malloc", a "_start" command entry that
// sets a flag, the ABI 0.2.0 marker, and proxy_on_request_headers, which
// continues only if _start ran.
func startModule() []byte {
	leb := func(n int) []byte {
		var out []byte
		for {
			b := byte(n & 0x7f)
			n >>= 7
			if n == 0 {
				return append(out, b)
			}
			out = append(out, b|0x80)
		}
	}
	section := func(id byte, content ...byte) []byte {
		return append(append([]byte{id}, leb(len(content))...), content...)
	}
	name := func(s string) []byte { return append(leb(len(s)), s...) }
	export := func(s string, kind, idx byte) []byte { return append(name(s), kind, idx) }
	body := func(code ...byte) []byte { return append(leb(len(code)), code...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	const i32 = 0x7f
	return cat(
		[]byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00},
		section(1, cat([]byte{3},
			[]byte{0x60, 0, 0},                     // () -> ()
			[]byte{0x60, 1, i32, 1, i32},           // (i32) -> i32
			[]byte{0x60, 3, i32, i32, i32, 1, i32}, // (i32 i32 i32) -> i32
		)...),
		section(3, 4, 0, 1, 0, 2),
		section(5, 1, 0, 1),
		section(6, cat([]byte{2},
			[]byte{i32, 1, 0x41}, leb(1024), []byte{0x0b}, // heap pointer
			[]byte{i32, 1, 0x41, 0, 0x0b}, // started flag
		)...),
		section(7, cat([]byte{5},
			export("memory", 2, 0),
			export("_start", 0, 0),
			export("malloc", 0, 1),
			export("proxy_abi_version_0_2_0", 0, 2),
			export("proxy_on_request_headers", 0, 3),
		)...),
		section(10, cat([]byte{4},
			body(0, 0x41, 1, 0x24, 1, 0x0b),                         // _start: started = 1
			body(0, 0x23, 0, 0x23, 0, 0x20, 0, 0x6a, 0x24, 0, 0x0b), // malloc: return heap; heap += size
			body(0, 0x0b),                // ABI marker
			body(0, 0x23, 1, 0x45, 0x0b), // continue (0) iff started
		)...),
	)
}

func TestNonGoGuestWithStartAndMalloc(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	mod, err := r.Compile(context.Background(), startModule())
	if err != nil {
		t.Fatal(err)
	}
	if mod.ABI() != ABI020 {
		t.Fatalf("abi %s", mod.ABI())
	}
	p, err := r.NewPlugin(context.Background(), mod, PluginConfig{Name: "start", PoolSize: 1, PauseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if res := request(t, p, StreamInfo{}, reqHeaders()); res.Action != Continue || res.Err != nil {
		t.Fatalf("_start did not run before the first callback: %v %v", res.Action, res.Err)
	}
}
