package wasmhost

import (
	"context"
	"fmt"
	"os"
)

// Example runs one request through a plugin. The module is a tiny
// hand-assembled guest (see start_test.go); the gateway fetches real modules
// by sha256 from the control plane.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "wasmhost-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	rt, err := NewRuntime(ctx, RuntimeConfig{CacheDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Close(ctx)
	mod, err := rt.Compile(ctx, startModule())
	if err != nil {
		fmt.Println(err)
		return
	}
	plugin, err := rt.NewPlugin(ctx, mod, PluginConfig{Name: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer plugin.Close()

	s, err := plugin.NewStream(ctx, StreamInfo{SourceAddress: "10.0.0.1:5000"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	h := NewHeaders(":method", "GET", ":path", "/", ":authority", "svc")
	res := s.OnRequestHeaders(h, true)
	if res.Action == Reply {
		fmt.Println("reply", res.Reply.Status)
		return
	}
	fmt.Println(mod.ABI(), res.Action)
	// Output: 0.2.0 continue
}
