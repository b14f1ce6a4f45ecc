package wasmhost

import "testing"

func TestSmokeHeaders(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	p := newPlugin(t, r, "headers", PluginConfig{})
	h := reqHeaders("x-mw-dye", "canary")
	res := request(t, p, StreamInfo{}, h)
	if res.Action != Continue {
		t.Fatalf("action = %v, err %v", res.Action, res.Err)
	}
	if v, _ := h.Get("x-mw-lane"); v != "canary" {
		t.Fatalf("x-mw-lane = %q; headers %v", v, h.Pairs)
	}
}
