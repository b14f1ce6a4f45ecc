//go:build !wasip1

package trace_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/meshwarden/meshwarden/filters/trace"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/tracectx/w3ccases"
)

// lines is a trace.Request over header lines, as the guest sees them.
type lines map[string][]string

func (l lines) Header(n string) (string, bool) {
	if v := l[n]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}

func (l lines) Values(n string) []string {
	var out []string
	for _, v := range l[n] {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
func (l lines) SetHeader(n, v string) { l[n] = []string{v} }
func (l lines) RemoveHeader(n string) { delete(l, n) }

// TestW3CNative runs the W3C cases through the trace engine (the filter's
// logic, native Go).
func TestW3CNative(t *testing.T) {
	cfg, err := traceconfig.ParseConfig(exampleConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	e := trace.NewEngine(cfg)
	for _, tc := range w3ccases.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			req := lines{}
			for i := 0; i < len(tc.Headers); i += 2 {
				req[tc.Headers[i]] = append(req[tc.Headers[i]], tc.Headers[i+1])
			}
			if _, err := e.Start(req, rand.Reader); err != nil {
				t.Fatal(err)
			}
			tc.Check(t, req["traceparent"], req["tracestate"])
		})
	}
}

// TestHostW3CHeaderLines runs the same cases through the trace filter's
// .wasm in the gateway's wasm host (wazero, Envoy's WASI surface).
func TestHostW3CHeaderLines(t *testing.T) {
	p, err := newPlugin(t, "trace", exampleConfig(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range w3ccases.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			h := wasmhost.NewHeaders(append([]string{":method", "GET", ":path", "/"}, tc.Headers...)...)
			s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if res := s.OnRequestHeaders(h, true); res.Action != wasmhost.Continue || res.Err != nil {
				t.Fatalf("request: %v %v", res.Action, res.Err)
			}
			tc.Check(t, h.Values("traceparent"), h.Values("tracestate"))
		})
	}
}
