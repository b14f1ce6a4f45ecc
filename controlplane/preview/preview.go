// Package preview shows what a candidate policy set would change before it
// is applied: per node, which xDS resources would be added, removed or
// changed, each change as a unified diff of the resource's YAML.
//
// The resources come either from a running control plane (its admin API,
// see [PlaneClient]) or from running the control plane's translator locally
// ([Translate]) on a catalog read once from Consul ([CatalogFromConsul]).
package preview

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

// Resources is one node's xDS resources: "type/name" (e.g.
// "clusters/payments~v2") → the resource as YAML.
type Resources map[string]string

// FromDump turns a snapshot dump (translate.Snapshot.Dump, or the plane's
// config_dump: {"listeners": [...], "clusters": [...], ...}) into Resources.
// Keys that are not lists of resources (such as "version") are ignored.
func FromDump(dump map[string]any) (Resources, error) {
	out := Resources{}
	for typ, v := range dump {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		for i, item := range list {
			name := resourceName(item)
			if name == "" {
				name = fmt.Sprintf("#%d", i)
			}
			b, err := yaml.Marshal(item)
			if err != nil {
				return nil, fmt.Errorf("render %s/%s as YAML: %w", typ, name, err)
			}
			out[typ+"/"+name] = string(b)
		}
	}
	return out, nil
}

func resourceName(item any) string {
	m, ok := item.(map[string]any)
	if !ok {
		return ""
	}
	for _, k := range []string{"name", "cluster_name", "clusterName"} {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// Change is one resource that differs between the current and the
// candidate configuration of a node.
type Change struct {
	// Op is "added", "removed" or "changed".
	Op string `json:"op"`
	// Resource is "type/name".
	Resource string `json:"resource"`
	// Diff is the unified diff of the resource's YAML.
	Diff string `json:"diff"`
}

// NodeDiff is every change of one node.
type NodeDiff struct {
	Node    string   `json:"node"`
	Changes []Change `json:"changes"`
	// Unchanged counts the resources that stay as they are.
	Unchanged int `json:"unchanged"`
}

// Report is the preview of a candidate set, node by node (sorted by id).
type Report struct {
	Nodes []NodeDiff `json:"nodes"`
}

// Changed reports whether any node would change.
func (r *Report) Changed() bool {
	for _, n := range r.Nodes {
		if len(n.Changes) > 0 {
			return true
		}
	}
	return false
}

// Compare diffs current against candidate, node by node. A node present on
// one side only has all its resources added or removed.
func Compare(current, candidate map[string]Resources) *Report {
	ids := slices.Concat(slices.Collect(maps.Keys(current)), slices.Collect(maps.Keys(candidate)))
	slices.Sort(ids)
	ids = slices.Compact(ids)
	r := &Report{}
	for _, id := range ids {
		r.Nodes = append(r.Nodes, compareNode(id, current[id], candidate[id]))
	}
	return r
}

// secretsPrefix marks SDS secrets. They come from the certificate manager,
// not from policies: a translation has none, a running node has its leaf
// and roots, and applying policies never removes them. The diff leaves
// them out rather than report them as removed.
const secretsPrefix = "secrets/"

func compareNode(id string, old, cur Resources) NodeDiff {
	nd := NodeDiff{Node: id, Changes: []Change{}}
	keys := map[string]bool{}
	for k := range old {
		keys[k] = true
	}
	for k := range cur {
		keys[k] = true
	}
	for k := range keys {
		if strings.HasPrefix(k, secretsPrefix) {
			delete(keys, k)
		}
	}
	names := slices.Sorted(maps.Keys(keys))
	for _, k := range names {
		a, inOld := old[k]
		b, inNew := cur[k]
		switch {
		case !inOld:
			nd.Changes = append(nd.Changes, Change{Op: "added", Resource: k, Diff: policies.UnifiedDiff("/dev/null", "candidate/"+k, "", b)})
		case !inNew:
			nd.Changes = append(nd.Changes, Change{Op: "removed", Resource: k, Diff: policies.UnifiedDiff("current/"+k, "/dev/null", a, "")})
		case a != b:
			nd.Changes = append(nd.Changes, Change{Op: "changed", Resource: k, Diff: policies.UnifiedDiff("current/"+k, "candidate/"+k, a, b)})
		default:
			nd.Unchanged++
		}
	}
	return nd
}

// Format writes the report for people: a summary line per node, then the
// diff of each changed resource.
func (r *Report) Format(w io.Writer) error {
	var b strings.Builder
	if len(r.Nodes) == 0 {
		b.WriteString("no nodes to compare: none is connected to the plane (or, locally, none is in the catalog)\n")
	}
	for _, n := range r.Nodes {
		var add, rem, chg int
		for _, c := range n.Changes {
			switch c.Op {
			case "added":
				add++
			case "removed":
				rem++
			default:
				chg++
			}
		}
		fmt.Fprintf(&b, "=== node %s: %d changed, %d added, %d removed, %d unchanged\n", n.Node, chg, add, rem, n.Unchanged)
		for _, c := range n.Changes {
			fmt.Fprintf(&b, "--- %s %s\n", c.Op, c.Resource)
			b.WriteString(c.Diff)
		}
	}
	if len(r.Nodes) > 0 {
		b.WriteString("(SDS secrets are not compared: certificates change them, policies do not)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DefaultNodes returns the nodes a local preview translates for: the
// gateway and one sidecar per catalog service (id "sidecar~<service>").
func DefaultNodes(cat *ir.Catalog) []translate.Node {
	nodes := []translate.Node{{ID: "gateway", Gateway: true}}
	if cat != nil {
		for _, s := range cat.ServiceNames() {
			nodes = append(nodes, translate.Node{ID: "sidecar~" + s, Service: s})
		}
	}
	return nodes
}

// Translate runs the control plane's translator on cat and ps for each node
// and returns their resources. Every snapshot is checked with Envoy's proto
// validation first, as the plane does before publishing.
func Translate(cat *ir.Catalog, ps *ir.PolicySet, nodes []translate.Node, opts translate.Options) (map[string]Resources, error) {
	if cat == nil {
		cat = &ir.Catalog{Services: map[string]*ir.Service{}}
	}
	if ps == nil {
		ps = &ir.PolicySet{}
	}
	shared, err := translate.Build(cat, ps, opts)
	if err != nil {
		return nil, fmt.Errorf("translate policy set %.12s: %w", ps.Revision, err)
	}
	out := map[string]Resources{}
	for _, n := range nodes {
		snap, err := shared.ForNode(n, nil)
		if err != nil {
			return nil, fmt.Errorf("translate for node %s: %w", n.ID, err)
		}
		if err := snap.Validate(); err != nil {
			return nil, fmt.Errorf("node %s: Envoy would reject the resources: %w", n.ID, err)
		}
		dump, err := snap.Dump()
		if err != nil {
			return nil, err
		}
		res, err := FromDump(dump)
		if err != nil {
			return nil, err
		}
		out[n.ID] = res
	}
	return out, nil
}

// CatalogFromConsul reads every service and its instances from Consul once.
func CatalogFromConsul(ctx context.Context, c *api.Client) (*ir.Catalog, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	names, meta, err := c.Catalog().Services(q)
	if err != nil {
		return nil, fmt.Errorf("read Consul catalog (check --consul points at a reachable agent): %w", err)
	}
	cat := &ir.Catalog{Index: meta.LastIndex, Services: make(map[string]*ir.Service, len(names))}
	for name := range names {
		entries, _, err := c.Health().Service(name, "", false, q)
		if err != nil {
			return nil, fmt.Errorf("read Consul service %q: %w", name, err)
		}
		svc := &ir.Service{Name: name}
		for _, e := range entries {
			if e.Service == nil {
				continue
			}
			addr := e.Service.Address
			in := ir.Instance{ID: e.Service.ID, Port: e.Service.Port, Tags: append([]string(nil), e.Service.Tags...),
				Meta: maps.Clone(e.Service.Meta), Healthy: e.Checks.AggregatedStatus() == api.HealthPassing}
			if e.Node != nil {
				in.Node = e.Node.Node
				if addr == "" {
					addr = e.Node.Address
				}
			}
			in.Address = addr
			svc.Instances = append(svc.Instances, in)
		}
		sort.Slice(svc.Instances, func(i, j int) bool { return svc.Instances[i].ID < svc.Instances[j].ID })
		cat.Services[name] = svc
	}
	return cat, nil
}
