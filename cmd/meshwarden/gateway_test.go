package main

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"time"
)

func TestTrustedModulesFromDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := trustedModules(dir); err == nil || !strings.Contains(err.Error(), "no .wasm files") {
		t.Fatalf("empty dir: err = %v, want one that says no .wasm files are there", err)
	}
	content := []byte("\x00asm not really")
	if err := os.WriteFile(filepath.Join(dir, "dye.wasm"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	sums, err := trustedModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	if len(sums) != 1 || sums[filepath.Join(dir, "dye.wasm")] != hex.EncodeToString(want[:]) {
		t.Fatalf("sums = %v, want only dye.wasm with sha256 %x", sums, want)
	}
}

func TestWasmInstancesFlag(t *testing.T) {
	f := gatewayFlags{listen: "127.0.0.1:0", callTimeout: time.Second, instances: -1, native: "on", wasi: string(wasmhost.WASIEnvoy), xdsAddr: "127.0.0.1:18000"}
	f.plane.Insecure = true // a loopback dev plane: no credentials to set up here
	if _, err := f.config(nil); err == nil || !strings.Contains(err.Error(), "--wasm-instances") {
		t.Fatalf("--wasm-instances -1: err = %v, want one naming the flag", err)
	}
	cmd := newGatewayCmd()
	if err := cmd.Flags().Set("wasm-instances", "3"); err != nil {
		t.Fatal(err)
	}
	f.instances, _ = cmd.Flags().GetInt("wasm-instances")
	cfg, err := f.config(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_ = cfg.Listener.Close()
	if cfg.AdminListener != nil {
		_ = cfg.AdminListener.Close()
	}
	if cfg.WasmInstances != 3 {
		t.Fatalf("Config.WasmInstances = %d, want 3", cfg.WasmInstances)
	}
}

func TestWasmCallTimeoutMustBePositive(t *testing.T) {
	for _, d := range []string{"0s", "-1s"} {
		f := gatewayFlags{listen: "127.0.0.1:0"}
		cmd := newGatewayCmd()
		if err := cmd.Flags().Set("wasm-call-timeout", d); err != nil {
			t.Fatal(err)
		}
		f.callTimeout, _ = cmd.Flags().GetDuration("wasm-call-timeout")
		if _, err := f.config(nil); err == nil || !strings.Contains(err.Error(), "--wasm-call-timeout") {
			t.Fatalf("--wasm-call-timeout %s: err = %v, want one naming the flag", d, err)
		}
	}
}
