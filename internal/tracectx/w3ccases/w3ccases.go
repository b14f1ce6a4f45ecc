// Package w3ccases holds the W3C Trace Context test suite's cases
// (w3c/trace-context test/test.py) as one table, so the trace filter's
// native engine, its .wasm in the gateway's host and its .wasm under V8
// are checked against the same expectations.
package w3ccases

import (
	"strconv"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/tracectx"
)

// Incoming is the traceparent the cases send (and continue when valid).
const Incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// Case is one case of the W3C Trace Context test suite
// (w3c/trace-context test/test.py) as header lines in, and what the
// filter must send on: whether the incoming trace is continued, and the
// one tracestate line ("" = none may be sent).
type Case struct {
	Name      string
	Headers   []string // name, value, name, value, ...
	SameTrace bool     // the incoming trace (Incoming) is continued
	State     string   // the one tracestate line sent on; "" = none
}

// Cases follows the suite's traceparent and tracestate tests: header
// lines, the 32-member limit, multi-tenant keys, the 256-character key and
// value limits, key and value characters, optional whitespace, and
// duplicated keys (the suite accepts the list with the repeated key kept
// once, its first entry).
func Cases() []Case {
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
	tp, other := Incoming, "00-12345678901234567890123456789012-1234567890123456-01"
	return []Case{
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

// Check asserts what was sent on for tc: one valid traceparent, of the
// incoming trace or a new one, and tc.State as the only non-empty
// tracestate line (an empty line is an empty list element, RFC 9110
// §5.6.1, and may pass through).
func (tc Case) Check(t testing.TB, tps, lines []string) {
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
	if same := sc.TraceID.String() == Incoming[3:35]; same != tc.SameTrace {
		t.Errorf("trace %s continued=%v, want %v", sc.TraceID, same, tc.SameTrace)
	}
	switch {
	case tc.State == "" && len(states) != 0:
		t.Errorf("tracestate sent on: %q, want none", states)
	case tc.State != "" && (len(states) != 1 || states[0] != tc.State):
		t.Errorf("tracestate sent on: %q, want one line %q", states, tc.State)
	}
}
