package controlplane

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/hashicorp/consul/api"
)

// Registration is the plane's entry in Consul.
type Registration struct {
	client *api.Client
	ID     string
}

// RegisterInConsul registers the plane as meshnames.PlaneServiceName at xdsAddr
// with an HTTP health check on http://<probeAddr>/healthz, and meta
// admin_addr. Call Deregister on graceful stop.
func RegisterInConsul(ctx context.Context, client *api.Client, xdsAddr, adminAddr, probeAddr string) (*Registration, error) {
	host, portStr, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		return nil, fmt.Errorf("xds address %q: %w", xdsAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("xds address %q: bad port: %w", xdsAddr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ahost, aport, err := net.SplitHostPort(adminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", adminAddr, err)
	}
	if ahost == "" || ahost == "0.0.0.0" || ahost == "::" {
		ahost = "127.0.0.1"
	}
	phost, pport, err := net.SplitHostPort(probeAddr)
	if err != nil {
		return nil, fmt.Errorf("probe address %q: %w", probeAddr, err)
	}
	if phost == "" || phost == "0.0.0.0" || phost == "::" {
		phost = "127.0.0.1"
	}
	id := fmt.Sprintf("%s-%s-%d", meshnames.PlaneServiceName, host, port)
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    meshnames.PlaneServiceName,
		Address: host,
		Port:    port,
		Meta:    map[string]string{"admin_addr": net.JoinHostPort(ahost, aport)},
		Check: &api.AgentServiceCheck{
			Name:                           "meshwarden control plane /healthz",
			HTTP:                           "http://" + net.JoinHostPort(phost, pport) + "/healthz",
			Interval:                       "2s",
			Timeout:                        "1s",
			DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("register %s in consul: %w", id, err)
	}
	return &Registration{client: client, ID: id}, nil
}

// Deregister removes the plane's entry.
func (r *Registration) Deregister(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(r.ID, q); err != nil {
		return fmt.Errorf("deregister %s from consul: %w", r.ID, err)
	}
	return nil
}
