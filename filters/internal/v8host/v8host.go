// Package v8host runs proxy-wasm filters in V8, Envoy's default Wasm engine,
// through host.mjs: a small proxy-wasm host on Node.js's WebAssembly that
// models proxy-wasm-cpp-host (the runtime inside Envoy) and exposes exactly
// Envoy's WASI surface. A story (VMs, upstream clusters, requests) goes to
// `node host.mjs` as JSON on stdin; the result comes back as JSON.
//
// See README.md for which cpp-host behaviour each choice follows.
package v8host

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed host.mjs
var hostJS []byte

// ErrNoNode is returned by Run when no `node` binary is on PATH.
var ErrNoNode = errors.New("v8host: node (Node.js, V8) is not on PATH: install nodejs to run the filters under V8")

// VM is one Wasm VM: a module, its root id and its configuration.
type VM struct {
	Name         string            `json:"name"`
	Wasm         string            `json:"wasm"` // path to the .wasm file
	RootID       string            `json:"rootId,omitempty"`
	VMID         string            `json:"vmId,omitempty"`
	VMConfig     string            `json:"vmConfig,omitempty"`
	PluginConfig string            `json:"pluginConfig,omitempty"`
	Properties   map[string]string `json:"properties,omitempty"`
}

// Cluster is how an upstream cluster answers proxy_http_call. A call whose
// DelayMs reaches its timeout, or a cluster with Fail set, gets the failure
// callback (no headers), as Envoy's onHttpCallFailure.
type Cluster struct {
	Status  int         `json:"status,omitempty"` // 200 when 0
	Headers [][2]string `json:"headers,omitempty"`
	Body    string      `json:"body,omitempty"`
	DelayMs int         `json:"delayMs,omitempty"`
	Fail    bool        `json:"fail,omitempty"`
}

// Request is one HTTP stream through every VM in order (the chain), then
// the response through them in reverse.
type Request struct {
	Properties      map[string]string `json:"properties,omitempty"`
	RequestHeaders  [][2]string       `json:"requestHeaders,omitempty"`
	RequestBody     []string          `json:"requestBody,omitempty"` // chunks
	ResponseHeaders [][2]string       `json:"responseHeaders,omitempty"`
	ResponseBody    string            `json:"responseBody,omitempty"`
	// Repeat runs the request this many times (the load loop);
	// RecordRepeats of them are recorded in Output.Requests (1 when 0).
	Repeat        int `json:"repeat,omitempty"`
	RecordRepeats int `json:"recordRepeats,omitempty"`
	// TicksAfter delivers this many tick rounds after the request.
	TicksAfter int `json:"ticksAfter,omitempty"`
}

// Input is one story.
type Input struct {
	VMs        []VM               `json:"vms"`
	Clusters   map[string]Cluster `json:"clusters,omitempty"`
	Properties map[string]string  `json:"properties,omitempty"` // host-wide (node.id, node.cluster)
	Requests   []Request          `json:"requests,omitempty"`
	// TickEvery delivers a tick round (proxy_on_tick to every root context
	// with a tick period) after every TickEvery requests; FinalTicks rounds
	// follow the last request. Ticks follow the story, not the wall clock.
	TickEvery  int `json:"tickEvery,omitempty"`
	FinalTicks int `json:"finalTicks,omitempty"`
	// RecordRequests and RecordCalls bound what the output keeps (1000).
	RecordRequests int `json:"recordRequests,omitempty"`
	RecordCalls    int `json:"recordCalls,omitempty"`
	// PollOneoff is "pr533" (default: clock-only subscriptions succeed,
	// any fd subscription is ENOSYS) or "enosys" (every call ENOSYS, as the
	// hosts before proxy-wasm-cpp-host PR #533 that had poll_oneoff).
	PollOneoff string `json:"pollOneoff,omitempty"`
	LogLevel   int    `json:"logLevel,omitempty"`
	// Environ is the environment every VM's WASI environ_get returns
	// ("KEY=value" entries), as Envoy's vm_config.environment_variables
	// provides it; empty by default, as in Envoy. GODEBUG=gctrace=1 makes
	// the Go runtime report each GC cycle, counted in VMResult.GCCycles.
	Environ []string `json:"environ,omitempty"`
}

// LocalReply is a proxy_send_local_response.
type LocalReply struct {
	Status     int         `json:"status"`
	Details    string      `json:"details"`
	Body       []byte      `json:"body"`
	Headers    [][2]string `json:"headers"`
	GRPCStatus int         `json:"grpcStatus"`
	Filter     string      `json:"filter"`
}

// RequestResult is what one recorded request did.
type RequestResult struct {
	// Action is "continue" (sent upstream), "reply" (answered locally) or
	// "stalled" (a filter paused and nothing resumed it).
	Action          string      `json:"action"`
	StalledAt       string      `json:"stalledAt"`
	RequestHeaders  [][2]string `json:"requestHeaders"` // as sent upstream
	UpstreamBody    []byte      `json:"upstreamBody"`
	ResponseHeaders [][2]string `json:"responseHeaders"`
	LocalReply      *LocalReply `json:"localReply"`
}

// Header returns the first value of header name in pairs.
func Header(pairs [][2]string, name string) (string, bool) {
	for _, p := range pairs {
		if p[0] == name {
			return p[1], true
		}
	}
	return "", false
}

// HeaderValues returns every value of header name in pairs.
func HeaderValues(pairs [][2]string, name string) []string {
	var v []string
	for _, p := range pairs {
		if p[0] == name {
			v = append(v, p[1])
		}
	}
	return v
}

// HTTPCall is one recorded proxy_http_call.
type HTTPCall struct {
	VM        string      `json:"vm"`
	Cluster   string      `json:"cluster"`
	Headers   [][2]string `json:"headers"`
	Body      []byte      `json:"body"`
	BodySize  int         `json:"bodySize"`
	TimeoutMs int         `json:"timeoutMs"`
	Outcome   string      `json:"outcome"` // status, "timeout" or "reset"
}

// VMResult is one VM's state at the end of the story.
type VMResult struct {
	Name           string           `json:"name"`
	Started        bool             `json:"started"`    // proxy_on_vm_start returned true
	Configured     bool             `json:"configured"` // proxy_on_configure returned true
	Failed         string           `json:"failed"`
	MemoryBytes    int              `json:"memoryBytes"`
	Allocations    int              `json:"allocations"`
	AllocatedBytes int              `json:"allocatedBytes"`
	TickPeriodMs   int              `json:"tickPeriodMs"`
	Metrics        map[string]int64 `json:"metrics"`
	StderrTail     []string         `json:"stderrTail"`
	// GCCycles counts the Go runtime's gctrace lines ("gc N @…") on the
	// VM's stderr: the GC cycles it ran, with GODEBUG=gctrace=1 in Environ.
	GCCycles int `json:"gcCycles"`
}

// LogLine is one proxy_log or stdout/stderr line.
type LogLine struct {
	VM    string `json:"vm"`
	Level int    `json:"level"`
	Msg   string `json:"msg"`
}

// WASI counts the WASI calls of every VM.
type WASI struct {
	Calls  map[string]int `json:"calls"`
	ENOSYS map[string]int `json:"enosys"` // calls answered ENOSYS (52)
	Errors map[string]int `json:"errors"` // other errno answers, "name:errno"
	// PollSubscriptions counts poll_oneoff calls by kind: "clock-only"
	// (answered), "with-fd" (ENOSYS).
	PollSubscriptions map[string]int `json:"pollSubscriptions"`
}

// Output is the result of a story.
type Output struct {
	// OK is false when a VM failed: a trap, proc_exit (a Go fatal error),
	// a missing import, a restricted hostcall. Failure says which, and
	// StderrTail holds the guest's stderr (the Go runtime's fatal error).
	OK            bool             `json:"ok"`
	Failure       string           `json:"failure"`
	StderrTail    []string         `json:"stderrTail"`
	VMs           []VMResult       `json:"vms"`
	Requests      []RequestResult  `json:"requests"`
	HTTPCalls     []HTTPCall       `json:"httpCalls"`
	HTTPCallCount map[string]int   `json:"httpCallCount"`
	HTTPCallBytes map[string]int64 `json:"httpCallBytes"`
	Logs          []LogLine        `json:"logs"`
	LogCount      int              `json:"logCount"`
	WASI          WASI             `json:"wasi"`
	Hostcalls     map[string]int   `json:"hostcalls"`
	RequestCount  int              `json:"requestCount"`
	TickCount     int              `json:"tickCount"`
	ElapsedMs     float64          `json:"elapsedMs"`
}

// Err returns nil for a story whose VMs all ran, else an error naming the
// failure with the guest's last stderr lines.
func (o *Output) Err() error {
	if o.OK {
		return nil
	}
	return fmt.Errorf("v8host: %s\nguest stderr:\n%s", o.Failure, strings.Join(o.StderrTail, "\n"))
}

// LogText joins every recorded log line.
func (o *Output) LogText() string {
	var b strings.Builder
	for _, l := range o.Logs {
		b.WriteString(l.Msg)
		b.WriteByte('\n')
	}
	return b.String()
}

// Available reports whether node is on PATH.
func Available() bool {
	_, err := exec.LookPath("node")
	return err == nil
}

// Run runs one story in a fresh `node host.mjs` process. It returns
// ErrNoNode when node is missing; a VM failure is not an error of Run but
// Output.OK false (see Output.Err).
func Run(ctx context.Context, in Input) (*Output, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, ErrNoNode
	}
	dir, err := os.MkdirTemp("", "v8host-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "host.mjs")
	if err := os.WriteFile(script, hostJS, 0o644); err != nil {
		return nil, err
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("v8host: node host.mjs: %w\n%s", err, stderr.Bytes())
	}
	var out Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("v8host: decode the host's output: %w\nstderr: %s", err, stderr.Bytes())
	}
	return &out, nil
}
