// Package proc is the one process supervisor of the test environments and
// the demo: it starts a child in its own process group (killed if the parent
// dies), keeps its last output lines for error messages, optionally copies
// them to a log, waits for readiness with a bound, and stops it with a grace
// period. The Consul and Pebble harnesses and the demo's stack all use it.
package proc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshwarden/meshwarden/internal/httpget"
)

// Proc is a child process of the demo or an e2e test: its output is kept
// (last lines, for error messages) and optionally copied with a prefix.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}

	mu    sync.Mutex
	lines []string
	err   error
}

// Spec describes a child process.
type Spec struct {
	// Name names the process in errors and log prefixes.
	Name string
	// Bin and Args are the command line.
	Bin  string
	Args []string
	// Env holds extra KEY=value variables on top of this process's.
	Env []string
	// Log, if non-nil, receives every output line, with "[Name] " in front
	// unless RawLog.
	Log    io.Writer
	RawLog bool
}

// Start starts bin with args. Output lines go to log (if non-nil) with
// "[name] " in front. The process is killed if the parent dies.
func Start(name string, log io.Writer, bin string, args ...string) (*Proc, error) {
	return StartSpec(Spec{Name: name, Bin: bin, Args: args, Log: log})
}

// StartEnv is Start with extra environment variables (KEY=value)
// on top of this process's environment.
func StartEnv(name string, log io.Writer, env []string, bin string, args ...string) (*Proc, error) {
	return StartSpec(Spec{Name: name, Bin: bin, Args: args, Env: env, Log: log})
}

// StartSpec starts the process spec describes.
func StartSpec(spec Spec) (*Proc, error) {
	name, log, bin := spec.Name, spec.Log, spec.Bin
	cmd := exec.Command(bin, spec.Args...)
	if len(spec.Env) > 0 {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			if len(p.lines) > 200 {
				p.lines = p.lines[len(p.lines)-200:]
			}
			p.mu.Unlock()
			switch {
			case log == nil:
			case spec.RawLog:
				fmt.Fprintln(log, line)
			default:
				fmt.Fprintf(log, "[%s] %s\n", name, line)
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error once it has ended (nil before, or on a
// clean exit).
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Pause stops the process group without killing it (SIGSTOP): it keeps its
// sockets open and answers nothing, as a hung process does.
func (p *Proc) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused process group (SIGCONT).
func (p *Proc) Resume() error { return p.signal(syscall.SIGCONT) }

func (p *Proc) signal(sig syscall.Signal) error {
	if p.Exited() {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// WaitReady polls ready every interval until it reports true. It fails,
// naming the process and quoting its last output, if the process exits
// first, if ctx ends, or after timeout.
func (p *Proc) WaitReady(ctx context.Context, timeout, interval time.Duration, ready func(context.Context) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	switch p.poll(ctx, deadline.C, interval, ready) {
	case pollExited:
		return fmt.Errorf("%s exited before it was ready: %v\n%s", p.Name, p.Err(), p.Tail(20))
	case pollCanceled:
		return fmt.Errorf("waiting for %s: %w", p.Name, ctx.Err())
	case pollTimedOut:
		return fmt.Errorf("%s was not ready within %s\n%s", p.Name, timeout, p.Tail(20))
	}
	return nil
}

// pollEnd is why poll stopped.
type pollEnd int

const (
	pollReady pollEnd = iota
	pollExited
	pollCanceled
	pollTimedOut
)

// poll calls ready every interval until it reports true, the process
// exits, ctx ends or deadline fires (nil: never), and says which came first.
func (p *Proc) poll(ctx context.Context, deadline <-chan time.Time, interval time.Duration, ready func(context.Context) bool) pollEnd {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if ready(ctx) {
			return pollReady
		}
		select {
		case <-p.done:
			return pollExited
		case <-ctx.Done():
			return pollCanceled
		case <-deadline:
			return pollTimedOut
		case <-tick.C:
		}
	}
}

// Tail returns the last n output lines.
func (p *Proc) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lines
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Stop sends SIGTERM and waits up to grace, then SIGKILLs.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill sends SIGKILL (kill -9) to the process group and waits.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// WaitHTTP polls url until it answers 200 or ctx ends; it fails early if the
// process exits.
func (p *Proc) WaitHTTP(ctx context.Context, url string) error {
	return p.WaitHTTPClient(ctx, &http.Client{Timeout: time.Second}, url)
}

// WaitHTTPClient is WaitHTTP with the given client (e.g. for HTTPS).
func (p *Proc) WaitHTTPClient(ctx context.Context, client *http.Client, url string) error {
	switch p.poll(ctx, nil, 50*time.Millisecond, HTTPOK(client, url)) {
	case pollExited:
		return fmt.Errorf("%s exited before %s answered 200:\n%s", p.Name, url, p.Tail(30))
	case pollCanceled:
		return fmt.Errorf("%s: %s did not answer 200 in time (%w); last output:\n%s", p.Name, url, ctx.Err(), p.Tail(30))
	}
	return nil
}

// HTTPOK returns a readiness check for WaitReady: a GET of url through
// client answers 200.
func HTTPOK(client *http.Client, url string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		resp, err := httpget.OK(ctx, client, url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}
}

// FreePorts returns n distinct free ports on 127.0.0.1 (held open together
// while choosing, so they differ).
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := listenFree()
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreeAddr returns a free 127.0.0.1:port.
func FreeAddr() (string, error) {
	l, err := listenFree()
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// listenFree listens on a free 127.0.0.1 port that a child process can
// take over once it is closed. It picks one at random below the kernel's
// ephemeral range: a port the kernel hands out for 127.0.0.1:0 comes from
// that range, which every outgoing connection of every process draws its
// local port from too, so between this close and the child's bind another
// test's connection could take it ("bind: address already in use", seen
// under parallel package tests). Below the range only another explicit
// bind can. It falls back to 127.0.0.1:0.
func listenFree() (net.Listener, error) {
	if lo := ephemeralLow(); lo > minPickedPort+1000 {
		for range 64 {
			p := minPickedPort + rand.IntN(lo-minPickedPort)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
				return l, nil
			}
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// minPickedPort is the lowest port listenFree picks: above the well-known
// and registered ports servers on a development machine usually take.
const minPickedPort = 20000

// ephemeralLow is the first port of the kernel's ephemeral range, or 0.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
