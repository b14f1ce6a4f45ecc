package wasmhost

import (
	"context"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestPluginConfigFromProto(t *testing.T) {
	str, _ := anypb.New(wrapperspb.String(`{"lane":"canary"}`))
	byt, _ := anypb.New(wrapperspb.Bytes([]byte{1, 2, 3}))
	st, _ := structpb.NewStruct(map[string]any{"a": "b"})
	other, _ := anypb.New(st)
	sha := strings.Repeat("ab", 32)
	vm := func(rt string, conf *anypb.Any) *wasmv3.PluginConfig_VmConfig {
		return &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId: "mw", Runtime: rt, Configuration: conf,
			Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
				HttpUri: &corev3.HttpUri{Uri: "http://plane/modules/" + sha}, Sha256: strings.ToUpper(sha),
			}}},
		}}
	}
	tests := []struct {
		name    string
		in      *wasmv3.PluginConfig
		want    PluginConfig
		wantErr string
	}{
		{
			name: "string configuration, fail closed by default",
			in:   &wasmv3.PluginConfig{Name: "dye", RootId: "dye-root", Configuration: str, Vm: vm("envoy.wasm.runtime.v8", byt)},
			want: PluginConfig{Name: "dye", RootID: "dye-root", VMID: "mw", Configuration: []byte(`{"lane":"canary"}`),
				VMConfiguration: []byte{1, 2, 3}, CodeSHA256: sha},
		},
		{
			name: "failure policy open, other Any passes its serialized value",
			in:   &wasmv3.PluginConfig{Name: "audit", Configuration: other, FailurePolicy: wasmv3.FailurePolicy_FAIL_OPEN, Vm: vm("envoy.wasm.runtime.wamr", nil)},
			want: PluginConfig{Name: "audit", VMID: "mw", Configuration: other.GetValue(), FailOpen: true, CodeSHA256: sha},
		},
		{
			name: "deprecated fail_open",
			in:   &wasmv3.PluginConfig{Name: "trace", FailOpen: true, Vm: vm("", nil)},
			want: PluginConfig{Name: "trace", VMID: "mw", FailOpen: true, CodeSHA256: sha},
		},
		{name: "null runtime", in: &wasmv3.PluginConfig{Name: "n", Vm: vm("envoy.wasm.runtime.null", nil)}, wantErr: "native code"},
		{name: "no vm", in: &wasmv3.PluginConfig{Name: "n"}, wantErr: "vm_config is missing"},
		{name: "no name", in: &wasmv3.PluginConfig{Vm: vm("", nil)}, wantErr: "name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PluginConfigFromProto(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.want.Name || got.RootID != tc.want.RootID || got.VMID != tc.want.VMID ||
				string(got.Configuration) != string(tc.want.Configuration) || string(got.VMConfiguration) != string(tc.want.VMConfiguration) ||
				got.FailOpen != tc.want.FailOpen || got.CodeSHA256 != tc.want.CodeSHA256 {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestProtoConfigFeedsPlugin runs the conformance guest from a proto config,
// as the gateway will.
func TestProtoConfigFeedsPlugin(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	mod, err := r.Compile(context.Background(), guest(t, "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	conf, _ := anypb.New(wrapperspb.String("from-proto"))
	vmConf, _ := anypb.New(wrapperspb.String("vm-proto"))
	cfg, err := PluginConfigFromProto(&wasmv3.PluginConfig{Name: "c", RootId: "r", Configuration: conf,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{VmId: "vm-proto", Configuration: vmConf,
			Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{Sha256: mod.SHA256()}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.NewPlugin(context.Background(), mod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := reqHeaders("x-test", "config")
	request(t, p, StreamInfo{}, h)
	if v, _ := h.Get("x-r-plugin-config"); v != "from-proto" {
		t.Fatalf("plugin config = %q", v)
	}
	if v, _ := h.Get("x-r-vm-config"); v != "vm-proto" {
		t.Fatalf("vm config = %q", v)
	}
}

func TestCompileOncePerSHA(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	wasm := guest(t, "noop")
	a, err := r.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Compile(context.Background(), append([]byte(nil), wasm...))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("same bytes compiled twice")
	}
	if a.ABI() != ABI021 || len(a.SHA256()) != 64 {
		t.Fatalf("abi %s sha %s", a.ABI(), a.SHA256())
	}
	if _, err := r.Compile(context.Background(), []byte("\x00asm\x01\x00\x00\x00")); err == nil || !strings.Contains(err.Error(), "proxy_abi_version") {
		t.Fatalf("empty module: err = %v", err)
	}
	if _, err := r.Compile(context.Background(), []byte("not wasm")); err == nil {
		t.Fatal("garbage compiled")
	}
}

func TestChainOrderAndShortCircuit(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	conf := newPlugin(t, r, "conformance", PluginConfig{Name: "audit", PoolSize: 1})
	hdr := newPlugin(t, r, "headers", PluginConfig{Name: "dye", PoolSize: 1})
	noop := newPlugin(t, r, "noop", PluginConfig{Name: "trace", PoolSize: 1})
	if _, err := OrderedChain(map[string]*Plugin{"dye": hdr}, []string{"dye", "audit"}); err == nil {
		t.Fatal("missing plugin accepted")
	}
	c, err := OrderedChain(map[string]*Plugin{"dye": hdr, "audit": conf, "trace": noop}, []string{"dye", "audit", "trace"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("request in order, response in reverse", func(t *testing.T) {
		cs, err := c.NewStream(context.Background(), StreamInfo{})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		h := reqHeaders("x-mw-dye", "blue", "x-test", "headers")
		if res := cs.OnRequestHeaders(h, false); res.Action != Continue {
			t.Fatalf("%v %v", res.Action, res.Err)
		}
		// dye ran before audit: audit's copy of the pairs includes x-mw-lane.
		if v, _ := h.Get("x-mw-lane"); v != "blue" {
			t.Fatalf("x-mw-lane = %q", v)
		}
		if v, _ := h.Get("x-r-pairs"); v != "0/8/8" {
			t.Fatalf("audit saw %q pairs, want dye's two extra headers included", v)
		}
		if res := cs.OnRequestBody([]byte("b"), true); res.Action != Continue || string(res.Body) != "b" {
			t.Fatalf("body %v %q", res.Action, res.Body)
		}
		rh := NewHeaders(":status", "200")
		cs.OnResponseHeaders(rh, true)
		// audit (conformance) adds x-r-resp before dye (headers) adds x-mw-filtered.
		if len(rh.Pairs) != 4 || rh.Pairs[1][0] != "x-r-resp" || rh.Pairs[3][0] != "x-mw-filtered" {
			t.Fatalf("response order: %v", rh.Pairs)
		}
	})
	t.Run("local reply stops the chain", func(t *testing.T) {
		cs, err := c.NewStream(context.Background(), StreamInfo{})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		res := cs.OnRequestHeaders(reqHeaders("x-test", "local"), true)
		if res.Action != Reply || res.Reply.Status != 403 {
			t.Fatalf("%v %+v", res.Action, res.Reply)
		}
	})
}

func TestEvict(t *testing.T) {
	r := newRuntime(t, RuntimeConfig{})
	wasm := guest(t, "noop")
	a, err := r.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.evict(context.Background(), a.SHA256()); err != nil {
		t.Fatal(err)
	}
	if err := r.evict(context.Background(), "unknown"); err != nil {
		t.Fatal(err)
	}
	b, err := r.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("evicted module returned again")
	}
	p, err := r.NewPlugin(context.Background(), b, PluginConfig{Name: "after-evict", PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if res := request(t, p, StreamInfo{}, reqHeaders()); res.Action != Continue {
		t.Fatalf("%v %v", res.Action, res.Err)
	}
}
