package wasmhost

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestWASIEnvoyAnswers calls WASI functions directly from a guest and
// checks Envoy's answers under WASIEnvoy (the default), and that WASIFull
// answers the calls Envoy refuses.
func TestWASIEnvoyAnswers(t *testing.T) {
	envoy := map[string]string{
		"poll-clock":     "0",
		"poll-fd":        "52", // ENOSYS: an fd subscription
		"fd-read":        "52",
		"random-big":     "28", // EINVAL: more than 64 KiB
		"random-small":   "0",
		"clock-realtime": "0",
		"clock-cputime":  "58", // ENOTSUP
		"prestat-3":      "8",  // EBADF: no preopened directory
		"write-fd5":      "8",
		"write-fd1":      "0",
	}
	for _, mode := range []WASIMode{"", WASIEnvoy, WASIFull} {
		t.Run(string(mode), func(t *testing.T) {
			sink := &logSink{}
			r := newRuntime(t, RuntimeConfig{WASI: mode})
			p := newPlugin(t, r, "wasiprobe", PluginConfig{Logger: slog.New(sink)})
			h := reqHeaders()
			if res := request(t, p, StreamInfo{}, h); res.Action != Continue || res.Err != nil {
				t.Fatalf("request: %v %v", res.Action, res.Err)
			}
			for probe, want := range envoy {
				got, _ := h.Get("x-wasi-" + probe)
				if mode == WASIFull {
					if probe == "poll-fd" && got != "0" {
						t.Errorf("full WASI: poll_oneoff with an fd subscription = errno %s, want 0", got)
					}
					continue
				}
				if got != want {
					t.Errorf("%s = errno %q, want %s (Envoy's answer)", probe, got, want)
				}
			}
			if !sink.Contains("wasiprobe to stdout") {
				t.Errorf("guest stdout not in the plugin log: %q", sink.Lines())
			}
		})
	}
}

// TestWASIEnvoyGuestDiesLikeInEnvoy: a guest that panics when poll_oneoff
// answers ENOSYS to an fd subscription (as Go's runtime does,
// golang/go#78513) fails under WASIEnvoy and works under WASIFull.
func TestWASIEnvoyGuestDiesLikeInEnvoy(t *testing.T) {
	for _, tc := range []struct {
		mode WASIMode
		dies bool
	}{{WASIEnvoy, true}, {WASIFull, false}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			sink := &logSink{}
			r := newRuntime(t, RuntimeConfig{WASI: tc.mode})
			p := newPlugin(t, r, "wasiprobe", PluginConfig{Logger: slog.New(sink)})
			res := request(t, p, StreamInfo{}, reqHeaders("x-die", "1"))
			if !tc.dies {
				if res.Action != Continue || res.Err != nil {
					t.Fatalf("full WASI: %v %v, want Continue", res.Action, res.Err)
				}
				return
			}
			if res.Err == nil || res.Action != Reply || res.Reply.Status != 503 {
				t.Fatalf("envoy WASI: %v %v, want the fail-closed 503 of a dead guest", res.Action, res.Err)
			}
			if !sink.Contains("poll_oneoff failed errno=52") {
				t.Errorf("the guest's panic is not in the plugin log: %q", sink.Lines())
			}
			if st := p.Stats(); st.Traps == 0 {
				t.Errorf("stats %+v: want a trap counted", st)
			}
		})
	}
}

// TestWASIEnvoyRefusesUnsupportedImport: a guest importing a WASI function
// Envoy does not export (path_open, via os.ReadFile) fails to load under
// WASIEnvoy, as it would in Envoy, and loads under WASIFull.
func TestWASIEnvoyRefusesUnsupportedImport(t *testing.T) {
	ctx := context.Background()
	wasm := guest(t, "wasifile")
	envoy := newRuntime(t, RuntimeConfig{WASI: WASIEnvoy})
	_, err := envoy.Compile(ctx, wasm)
	if err == nil || !strings.Contains(err.Error(), "wasi_snapshot_preview1.path_open") || !strings.Contains(err.Error(), "--wasm-wasi=full") {
		t.Fatalf("envoy WASI: err = %v, want a compile failure naming path_open and the way out", err)
	}
	full := newRuntime(t, RuntimeConfig{WASI: WASIFull})
	p := newPlugin(t, full, "wasifile", PluginConfig{})
	h := reqHeaders()
	if res := request(t, p, StreamInfo{}, h); res.Action != Continue || res.Err != nil {
		t.Fatalf("full WASI: %v %v", res.Action, res.Err)
	}
	if v, _ := h.Get("x-read-error"); v == "" || v == "none" {
		t.Errorf("full WASI: x-read-error = %q, want the failed read (no preopened directory)", v)
	}
}

func TestWASIModeRejected(t *testing.T) {
	_, err := NewRuntime(context.Background(), RuntimeConfig{WASI: "wasix"})
	if err == nil || !strings.Contains(err.Error(), `"envoy"`) {
		t.Fatalf("err = %v, want one naming the valid modes", err)
	}
}
