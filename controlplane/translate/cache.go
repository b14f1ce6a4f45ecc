package translate

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/meshwarden/meshwarden/ir"
)

// Cache memoizes the per-service part of translation (clusters, load
// assignments, virtual host, gateway path routes, their content hash and
// whether they passed validation) between builds, keyed by a fingerprint of
// the service's instances and route policy. With it a Consul change to one
// service of 10k re-translates that service only. A Cache may be shared by
// concurrent builds; the resources it hands out are never mutated.
type Cache struct {
	mu      sync.Mutex
	entries map[string]*serviceEntry
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{entries: map[string]*serviceEntry{}} }

type serviceEntry struct {
	key       uint64
	clusters  []types.Resource
	meshOf    []string
	endpoints []types.Resource
	vhost     *routev3.VirtualHost
	byPath    []*routev3.Route
	digest    [sha256.Size]byte
	validated atomic.Bool
}

// entry returns the cached entry of service if its fingerprint matches, or
// translates it afresh (and caches it).
func (c *Cache) entry(name string, svc *ir.Service, r *ir.Route, rs *ir.Resilience) (*serviceEntry, error) {
	key := fingerprint(name, svc, r, rs)
	if c != nil {
		c.mu.Lock()
		e, ok := c.entries[name]
		c.mu.Unlock()
		if ok && e.key == key {
			return e, nil
		}
	}
	e, err := translateService(name, svc, r, rs)
	if err != nil {
		return nil, err
	}
	e.key = key
	if c != nil {
		c.mu.Lock()
		c.entries[name] = e
		c.mu.Unlock()
	}
	return e, nil
}

// retain drops entries of services no longer present.
func (c *Cache) retain(names []string) {
	if c == nil {
		return
	}
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := range c.entries {
		if !keep[n] {
			delete(c.entries, n)
		}
	}
}

// translateService builds one service's resources and their digest.
func translateService(name string, svc *ir.Service, r *ir.Route, rs *ir.Resilience) (*serviceEntry, error) {
	e := &serviceEntry{}
	add := func(cluster string, sel map[string]string) {
		c := edsCluster(cluster)
		applyClusterResilience(c, rs, strings.TrimPrefix(strings.TrimPrefix(cluster, name), "~"))
		e.clusters = append(e.clusters, c)
		e.meshOf = append(e.meshOf, name)
		e.endpoints = append(e.endpoints, loadAssignment(cluster, svc, sel))
	}
	add(name, nil)
	if r != nil {
		for _, sub := range r.Subsets {
			add(ClusterName(name, sub.Name), sub.Selector)
		}
	}
	e.vhost = &routev3.VirtualHost{
		Name:    name,
		Domains: []string{name, name + ".service.consul", name + ":*", name + ".service.consul:*"},
		Routes:  serviceRoutes(name, r, rs, "/", ""),
	}
	e.byPath = serviceRoutes(name, r, rs, "/"+name+"/", "/")
	h := sha256.New()
	for _, group := range [][]types.Resource{e.clusters, e.endpoints, {e.vhost}} {
		if err := hashAll(h, group); err != nil {
			return nil, err
		}
	}
	for _, rt := range e.byPath {
		if err := hashAll(h, []types.Resource{rt}); err != nil {
			return nil, err
		}
	}
	copy(e.digest[:], h.Sum(nil))
	return e, nil
}

// validate runs ValidateAll on the entry's resources once.
func (e *serviceEntry) validate() error {
	if e.validated.Load() {
		return nil
	}
	for _, group := range [][]types.Resource{e.clusters, e.endpoints, {e.vhost}} {
		for _, r := range group {
			if err := validate(r); err != nil {
				return err
			}
		}
	}
	for _, rt := range e.byPath {
		if err := validate(rt); err != nil {
			return err
		}
	}
	e.validated.Store(true)
	return nil
}

func hashAll(h hash.Hash, rs []types.Resource) error {
	for _, r := range rs {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			return fmt.Errorf("hash resource: %w", err)
		}
		h.Write(b)
	}
	return nil
}

// fingerprint hashes everything translateService reads. It appends the
// fields to one buffer and hashes it once (fmt-free: it runs for every
// service on every build).
func fingerprint(name string, svc *ir.Service, r *ir.Route, rs *ir.Resilience) uint64 {
	buf := make([]byte, 0, 256)
	str := func(s string) {
		buf = append(buf, s...)
		buf = append(buf, 0)
	}
	num := func(n int64) {
		buf = strconv.AppendInt(buf, n, 10)
		buf = append(buf, 0)
	}
	kv := func(m map[string]string) {
		keys := slices.Sorted(maps.Keys(m))
		for _, k := range keys {
			str(k)
			str(m[k])
		}
		buf = append(buf, 1)
	}
	str(name)
	if r != nil {
		str("route")
		for _, sub := range r.Subsets {
			str(sub.Name)
			kv(sub.Selector)
		}
		buf = append(buf, 2)
		for _, l := range r.Lanes {
			str(l.Lane)
			str(l.Subset)
			kv(l.Headers)
		}
		buf = append(buf, 2)
		for _, w := range r.Weights {
			str(w.Subset)
			num(int64(w.Weight))
		}
		buf = append(buf, 2)
		str(r.DefaultSubset)
		num(int64(r.Timeout))
		num(int64(r.Retries))
	}
	if rs != nil {
		// Rare and small: JSON is precise enough and cannot miss a field.
		js, _ := json.Marshal(rs)
		str("resilience")
		str(string(js))
	}
	if svc != nil {
		for _, in := range svc.Instances {
			str(in.ID)
			str(in.Node)
			str(in.Address)
			num(int64(in.Port))
			if in.Healthy {
				buf = append(buf, 'H')
			}
			for _, t := range in.Tags {
				str(t)
			}
			buf = append(buf, 1)
			kv(in.Meta)
		}
	}
	h := fnv.New64a()
	h.Write(buf)
	return h.Sum64()
}
