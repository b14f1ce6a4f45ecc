// Package demo runs Meshwarden's demonstration: a real Consul agent, the
// control plane, the audit collector, the gateway and two versions of a
// small upstream service, with dyed, audited and traced traffic. The e2e
// suite drives the same stack and asserts what the demo prints.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Echo is what the demo upstream answers: who served the request and the
// Meshwarden-relevant headers it received.
type Echo struct {
	Service string            `json:"service"`
	Version string            `json:"version"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
}

// Upstream is a small HTTP service registered in Consul with meta
// version=<Version>: it answers every request with an [Echo].
type Upstream struct {
	Service, Version string
	Addr             string
	srv              *http.Server
	ln               net.Listener
}

// StartUpstream listens on a free loopback port and serves.
func StartUpstream(service, version string) (*Upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: listen: %w", service, version, err)
	}
	u := &Upstream{Service: service, Version: version, Addr: ln.Addr().String(), ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/", u.echo)
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

func (u *Upstream) echo(w http.ResponseWriter, r *http.Request) {
	e := Echo{Service: u.Service, Version: u.Version, Method: r.Method, Path: r.URL.Path, Headers: map[string]string{}}
	for k, v := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-mw-") || lk == "traceparent" || lk == "tracestate" || lk == "baggage" || strings.HasPrefix(lk, "x-b3") || lk == "b3" || lk == "x-user-id" {
			e.Headers[lk] = strings.Join(v, ",")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-served-by", u.Service+"-"+u.Version)
	_ = json.NewEncoder(w).Encode(e)
}

// ID is the instance's Consul service id.
func (u *Upstream) ID() string { return u.Service + "-" + u.Version }

// Register adds the instance to Consul with meta version and an HTTP check.
func (u *Upstream) Register(c *api.Client) error {
	host, portStr, _ := net.SplitHostPort(u.Addr)
	port, _ := strconv.Atoi(portStr)
	reg := &api.AgentServiceRegistration{
		ID: u.ID(), Name: u.Service, Address: host, Port: port,
		Tags: []string{"version=" + u.Version},
		Meta: map[string]string{"version": u.Version},
		Check: &api.AgentServiceCheck{
			HTTP: "http://" + u.Addr + "/healthz", Interval: "1s", Timeout: "1s",
			DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		return fmt.Errorf("register %s in consul: %w", u.ID(), err)
	}
	return nil
}

// Close stops serving.
func (u *Upstream) Close(ctx context.Context) error {
	err := u.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
