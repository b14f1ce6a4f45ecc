//go:build !wasip1

package trace_test

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/trace"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

// w3cCase is one case of the W3C Trace Context test suite
// (w3c/trace-context test/test.py) as header lines in, and what the
// filter must send on: whether the incoming trace is continued, and the
// one tracestate line ("" = none may be sent).
type w3cCase struct {
	name      string
	hdr       []string
	sameTrace bool
	state     string
}

// w3cCases follows the suite's traceparent and tracestate tests: header
// lines, the 32-member limit, multi-tenant keys, the 256-character key and
// value limits, key and value characters, optional whitespace, and
// duplicated keys (the suite accepts the list with the repeated key kept
// once, its first entry).
func w3cCases() []w3cCase {
	members := func(from, to int) string {
		var m []string
		for i := from; i < to; i++ {
			n := strconv.Itoa(100 + i)[1:]
			m = append(m, "bar"+n+"=bar"+n)
		}
		return strings.Join(m, ",")
	}
	key256 := "k" + strings.Repeat("a", 255)
	val256 := strings.Repeat("v", 256)
	tenant241 := "t" + strings.Repeat("x", 240)
	tp, other := incoming, "00-12345678901234567890123456789012-1234567890123456-01"
	return []w3cCase{
		{"two traceparent lines restart the trace", []string{"traceparent", tp, "traceparent", other, "tracestate", "foo=1"}, false, ""},
		{"two identical traceparent lines restart the trace", []string{"traceparent", tp, "traceparent", tp}, false, ""},
		{"invalid traceparent restarts and drops tracestate", []string{"traceparent", "00-" + strings.Repeat("0", 32) + "-1234567890123456-01", "tracestate", "foo=1"}, false, ""},
		{"version ff is invalid", []string{"traceparent", "ff" + tp[2:], "tracestate", "foo=1"}, false, ""},
		{"tracestate lines are one list", []string{"traceparent", tp, "tracestate", "foo=1", "tracestate", "bar=2"}, true, "foo=1,bar=2"},
		{"empty tracestate line is an empty element", []string{"traceparent", tp, "tracestate", "", "tracestate", "foo=1"}, true, "foo=1"},
		{"empty list members are skipped", []string{"traceparent", tp, "tracestate", "foo=1,,bar=2,"}, true, "foo=1,bar=2"},
		{"optional whitespace", []string{"traceparent", tp, "tracestate", "foo=1 \t , \t bar=2"}, true, "foo=1,bar=2"},
		{"32 members on one line kept", []string{"traceparent", tp, "tracestate", members(0, 32)}, true, members(0, 32)},
		{"33 members on one line dropped", []string{"traceparent", tp, "tracestate", members(0, 33)}, true, ""},
		{"32 members over two lines kept", []string{"traceparent", tp, "tracestate", members(0, 16), "tracestate", members(16, 32)}, true, members(0, 32)},
		{"33 members over two lines dropped", []string{"traceparent", tp, "tracestate", members(0, 16), "tracestate", members(16, 33)}, true, ""},
		{"multi-tenant keys over lines", []string{"traceparent", tp, "tracestate", "foo@bar=1", "tracestate", "bar@baz=2"}, true, "foo@bar=1,bar@baz=2"},
		{"tenant of 241 at system of 14", []string{"traceparent", tp, "tracestate", tenant241 + "@s" + strings.Repeat("y", 13) + "=1"}, true, tenant241 + "@s" + strings.Repeat("y", 13) + "=1"},
		{"tenant of 242 dropped", []string{"traceparent", tp, "tracestate", tenant241 + "x@s=1"}, true, ""},
		{"system of 15 dropped", []string{"traceparent", tp, "tracestate", "t@s" + strings.Repeat("y", 14) + "=1"}, true, ""},
		{"two @ dropped", []string{"traceparent", tp, "tracestate", "foo@bar@baz=1"}, true, ""},
		{"key of 256 kept", []string{"traceparent", tp, "tracestate", key256 + "=1"}, true, key256 + "=1"},
		{"key of 257 dropped", []string{"traceparent", tp, "tracestate", key256 + "a=1"}, true, ""},
		{"key with upper case dropped", []string{"traceparent", tp, "tracestate", "Foo=1"}, true, ""},
		{"key with illegal character dropped", []string{"traceparent", tp, "tracestate", "foo.bar=1"}, true, ""},
		{"key allowed characters", []string{"traceparent", tp, "tracestate", "a_-*/0=1"}, true, "a_-*/0=1"},
		{"value of 256 kept", []string{"traceparent", tp, "tracestate", "foo=" + val256}, true, "foo=" + val256},
		{"value of 257 dropped", []string{"traceparent", tp, "tracestate", "foo=" + val256 + "v"}, true, ""},
		{"value with = dropped", []string{"traceparent", tp, "tracestate", "foo=1=2"}, true, ""},
		{"value with control character dropped", []string{"traceparent", tp, "tracestate", "foo=\x01"}, true, ""},
		{"empty value dropped", []string{"traceparent", tp, "tracestate", "foo="}, true, ""},
		{"member without = dropped", []string{"traceparent", tp, "tracestate", "foo"}, true, ""},
		{"duplicated key keeps the first", []string{"traceparent", tp, "tracestate", "foo=1,foo=2", "tracestate", "foo=3,bar=4"}, true, "foo=1,bar=4"},
		{"duplicated identical member kept once", []string{"traceparent", tp, "tracestate", "foo=1,foo=1"}, true, "foo=1"},
		{"one line passes through unchanged", []string{"traceparent", tp, "tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}, true, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"tracestate without traceparent dropped", []string{"tracestate", "foo=1"}, false, ""},
	}
}

// check asserts what was sent on for tc: one valid traceparent, of the
// incoming trace or a new one, and tc.state as the only non-empty
// tracestate line (an empty line is an empty list element, RFC 9110
// §5.6.1, and may pass through).
func (tc w3cCase) check(t *testing.T, tps, lines []string) {
	t.Helper()
	var states []string
	for _, l := range lines {
		if l != "" {
			states = append(states, l)
		}
	}
	if len(tps) != 1 {
		t.Fatalf("traceparent lines sent on: %q, want one", tps)
	}
	sc, err := tracectx.ParseTraceparent(tps[0])
	if err != nil {
		t.Fatalf("traceparent sent on %q: %v", tps[0], err)
	}
	if same := sc.TraceID.String() == incoming[3:35]; same != tc.sameTrace {
		t.Errorf("trace %s continued=%v, want %v", sc.TraceID, same, tc.sameTrace)
	}
	switch {
	case tc.state == "" && len(states) != 0:
		t.Errorf("tracestate sent on: %q, want none", states)
	case tc.state != "" && (len(states) != 1 || states[0] != tc.state):
		t.Errorf("tracestate sent on: %q, want one line %q", states, tc.state)
	}
}

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
	for _, tc := range w3cCases() {
		t.Run(tc.name, func(t *testing.T) {
			req := lines{}
			for i := 0; i < len(tc.hdr); i += 2 {
				req[tc.hdr[i]] = append(req[tc.hdr[i]], tc.hdr[i+1])
			}
			if _, err := e.Start(req, rand.Reader); err != nil {
				t.Fatal(err)
			}
			tc.check(t, req["traceparent"], req["tracestate"])
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
	for _, tc := range w3cCases() {
		t.Run(tc.name, func(t *testing.T) {
			h := wasmhost.NewHeaders(append([]string{":method", "GET", ":path", "/"}, tc.hdr...)...)
			s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if res := s.OnRequestHeaders(h, true); res.Action != wasmhost.Continue || res.Err != nil {
				t.Fatalf("request: %v %v", res.Action, res.Err)
			}
			tc.check(t, h.Values("traceparent"), h.Values("tracestate"))
		})
	}
}
