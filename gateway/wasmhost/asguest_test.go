package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// asGuest returns testdata/asguest/asguest.wasm, a guest of another SDK
// (AssemblyScript, @solo-io/proxy-runtime 0.1.8, ABI 0.2.0, built by
// testdata/asguest/build.sh), after checking its recorded sha256.
func asGuest(t *testing.T) []byte {
	t.Helper()
	wasm, err := os.ReadFile("testdata/asguest/asguest.wasm")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := os.ReadFile("testdata/asguest/asguest.wasm.sha256")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(wasm)
	if want, _, _ := strings.Cut(string(rec), " "); hex.EncodeToString(sum[:]) != want {
		t.Fatalf("asguest.wasm has sha256 %x, asguest.wasm.sha256 says %s: rebuild with testdata/asguest/build.sh", sum, want)
	}
	return wasm
}

// TestAssemblyScriptGuest loads the AssemblyScript guest with and without
// a plugin configuration, under both WASI modes. With one it runs. Without
// one, proxy_get_buffer_bytes answers Ok and writes nothing (as
// proxy-wasm-cpp-host: an empty read copies nothing), and proxy-runtime
// 0.1.8 then reads the pointer a previous hostcall left in its global
// buffer reference and frees it twice: it aborts (pure.ts:112, proc_exit
// 255) in proxy_on_configure. The V8 host with cpp-host's semantics
// (filters/internal/v8host) fails the same way: under Envoy such a guest
// needs a non-empty configuration.
func TestAssemblyScriptGuest(t *testing.T) {
	ctx := context.Background()
	wasm := asGuest(t)
	for _, mode := range []WASIMode{WASIEnvoy, WASIFull} {
		r := newRuntime(t, RuntimeConfig{WASI: mode})
		mod, err := r.Compile(ctx, wasm)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if mod.ABI() != ABI020 {
			t.Fatalf("ABI %v, want 0.2.0", mod.ABI())
		}
		for _, tc := range []struct {
			name string
			cfg  []byte
			want string
		}{{"no configuration", nil, ""}, {"configuration", []byte("hello"), "hello"}} {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				sink := &logSink{}
				p, err := r.NewPlugin(ctx, mod, PluginConfig{Name: "asguest", RootID: "asguest", Configuration: tc.cfg, Logger: slog.New(sink)})
				if tc.want == "" {
					if err == nil || !strings.Contains(err.Error(), "proxy_on_configure") || !strings.Contains(err.Error(), "exit_code(255)") || !sink.Contains("pure.ts(112") {
						t.Fatalf("err = %v, logs %q; want proc_exit(255) in proxy_on_configure after the abort at pure.ts:112", err, sink.Lines())
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				h := reqHeaders()
				if res := request(t, p, StreamInfo{}, h); res.Action != Continue || res.Err != nil {
					t.Fatalf("request: %v %v", res.Action, res.Err)
				}
				if got, _ := h.Get("x-as-config"); got != tc.want {
					t.Errorf("x-as-config = %q, want %q", got, tc.want)
				}
			})
		}
	}
}
