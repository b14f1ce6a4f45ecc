// Package consulagent starts and stops a real Consul agent (`consul agent
// -dev`) on free loopback ports. Tests use it through consultest; the demo
// uses it directly. The binary comes from MESHWARDEN_CONSUL, else from the
// build cache that scripts/ensure-consul.sh fills, else from PATH.
package consulagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshwarden/meshwarden/internal/testenv/proc"
)

// Options configure an agent. The zero value is a dev agent on free ports.
type Options struct {
	// Binary is the consul executable; empty means [FindBinary].
	Binary string
	// DataDir, if set, makes the agent persistent (server mode, not -dev),
	// so that a stopped and restarted agent keeps its catalog.
	DataDir string
	// Log receives the agent's output; nil discards it.
	Log io.Writer
	// Ports, if non-zero, are reused (to restart an agent on the same
	// address); zero picks free ones.
	Ports Ports
	// ManagementToken, when set, turns Consul's ACL system on with
	// default_policy "deny" (as a production cluster runs it) and makes
	// this the initial management token; the agent uses it as its own
	// token and [Agent.Client] sends it. Use [Agent.CreateToken] for
	// narrower tokens.
	ManagementToken string
}

// Ports are the agent's listening ports on 127.0.0.1.
type Ports struct{ HTTP, SerfLAN, SerfWAN, Server, GRPC int }

// Agent is a running Consul agent.
type Agent struct {
	opts  Options
	proc  *proc.Proc
	Ports Ports
}

// ErrNoBinary says no consul binary could be found.
var ErrNoBinary = errors.New("no consul binary: run `make consul` (or scripts/ensure-consul.sh) to build it once, or set MESHWARDEN_CONSUL")

// FindBinary locates the consul executable.
func FindBinary() (string, error) {
	if p := os.Getenv("MESHWARDEN_CONSUL"); p != "" {
		return p, nil
	}
	if p, err := cachedBinary(); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	return "", ErrNoBinary
}

// cachedBinary finds $MESHWARDEN_CACHE/consul-<version>/consul, with the
// version read from tools/consul/go.mod of the source tree this package was
// built from.
func cachedBinary() (string, error) {
	cache := os.Getenv("MESHWARDEN_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "meshwarden")
	}
	_, file, _, _ := runtime.Caller(0)
	mod := filepath.Join(filepath.Dir(file), "..", "..", "tools", "consul", "go.mod")
	data, err := os.ReadFile(mod)
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "github.com/hashicorp/consul" {
				p := filepath.Join(cache, "consul-"+f[1], "consul")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
		}
	}
	// Fall back to any cached version.
	matches, _ := filepath.Glob(filepath.Join(cache, "consul-*", "consul"))
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", ErrNoBinary
}

// Start launches an agent and waits until it has a leader and answers.
func Start(ctx context.Context, opts Options) (*Agent, error) {
	if opts.Binary == "" {
		b, err := FindBinary()
		if err != nil {
			return nil, err
		}
		opts.Binary = b
	}
	if opts.Ports == (Ports{}) {
		ps, err := proc.FreePorts(5)
		if err != nil {
			return nil, err
		}
		opts.Ports = Ports{HTTP: ps[0], SerfLAN: ps[1], SerfWAN: ps[2], Server: ps[3], GRPC: ps[4]}
	}
	a := &Agent{opts: opts, Ports: opts.Ports}
	if err := a.start(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) start(ctx context.Context) error {
	p := a.opts.Ports
	args := []string{"agent",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-http-port", strconv.Itoa(p.HTTP), "-dns-port", "-1",
		"-serf-lan-port", strconv.Itoa(p.SerfLAN), "-serf-wan-port", strconv.Itoa(p.SerfWAN),
		"-server-port", strconv.Itoa(p.Server), "-grpc-port", strconv.Itoa(p.GRPC),
		"-node", fmt.Sprintf("mw-%d", p.HTTP), "-log-level", "warn",
		"-hcl", `connect { enabled = true }`,
		"-hcl", `performance { raft_multiplier = 1 }`,
		// Consul's gRPC-TLS port defaults to a fixed 8503 even in -dev
		// mode; two agents on one machine (parallel test packages) would
		// collide on it. Nothing here uses it.
		"-hcl", `ports { grpc_tls = -1 }`,
	}
	if t := a.opts.ManagementToken; t != "" {
		args = append(args, "-hcl", fmt.Sprintf(`acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = false
  tokens {
    initial_management = %q
    agent = %q
  }
}`, t, t))
	}
	if a.opts.DataDir != "" {
		args = append(args, "-server", "-bootstrap-expect", "1", "-data-dir", a.opts.DataDir,
			"-hcl", `ui_config { enabled = false }`)
	} else {
		args = append(args, "-dev")
	}
	child, err := proc.StartSpec(proc.Spec{Name: "consul", Bin: a.opts.Binary, Args: args, Log: a.opts.Log, RawLog: true})
	if err != nil {
		return err
	}
	a.proc = child
	client, err := a.Client()
	if err != nil {
		return err
	}
	// The catalog accepts writes once the agent has a leader and has
	// synced itself.
	err = child.WaitReady(ctx, 60*time.Second, 50*time.Millisecond, func(context.Context) bool {
		leader, err := client.Status().Leader()
		if err != nil || leader == "" {
			return false
		}
		_, _, err = client.Catalog().Nodes(nil)
		return err == nil
	})
	if err != nil {
		a.Stop()
		return fmt.Errorf("start consul: %w", err)
	}
	return nil
}

// Addr is the HTTP API address, host:port.
func (a *Agent) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Ports.HTTP)) }

// Client returns an API client for the agent.
func (a *Agent) Client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = a.Addr()
	cfg.Token = a.opts.ManagementToken
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return c, nil
}

// Stop terminates the agent (SIGTERM, then SIGKILL after 5s) and waits.
func (a *Agent) Stop() {
	if a.proc != nil {
		a.proc.Stop(5 * time.Second)
	}
}

// Pause stops the agent's process without killing it (SIGSTOP): it keeps
// its sockets open and answers nothing, as a hung agent does.
func (a *Agent) Pause() error {
	if a.proc == nil {
		return errors.New("consul agent is not running")
	}
	return a.proc.Pause()
}

// Resume continues a paused agent (SIGCONT).
func (a *Agent) Resume() error {
	if a.proc == nil {
		return errors.New("consul agent is not running")
	}
	return a.proc.Resume()
}

// Restart stops the agent and starts it again on the same ports. With a
// DataDir the catalog survives; in -dev mode it starts empty.
func (a *Agent) Restart(ctx context.Context) error {
	a.Stop()
	return a.start(ctx)
}
