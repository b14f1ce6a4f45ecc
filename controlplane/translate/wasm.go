package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/ir"
)

// WasmRuntime is the Wasm runtime Envoy runs the modules in.
const WasmRuntime = "envoy.wasm.runtime.v8"

// buildFilters orders the policy's filters by filters.Order() and resolves
// every module hash, so that a missing module rejects the policy set.
func (s *Shared) buildFilters(ps *ir.PolicySet) error {
	rank := map[string]int{}
	for i, n := range filters.Order() {
		rank[n] = i
	}
	byName := map[string]ir.Filter{}
	for _, f := range ps.Filters {
		if _, ok := rank[f.Name]; !ok {
			return fmt.Errorf("%s: filter %q is not one of %s", f.Source, f.Name, strings.Join(filters.Order(), ", "))
		}
		if _, dup := byName[f.Name]; dup {
			return fmt.Errorf("%s: filter %q is configured twice: keep one", f.Source, f.Name)
		}
		if f.SHA256 == "" {
			f.SHA256 = s.opts.ModuleSHA256[f.Name]
		}
		if f.SHA256 == "" {
			return fmt.Errorf("%s: filter %q has no module: build it into the filters dir (make filters) or pin sha256", f.Source, f.Name)
		}
		if s.opts.ModuleBaseURL == "" {
			return fmt.Errorf("%s: filter %q needs a module base URL: set --module-base-url", f.Source, f.Name)
		}
		if s.opts.MTLS && f.Name == "audit" {
			cfg, dropped, err := dropAuditToken(f.Config)
			if err != nil {
				return fmt.Errorf("%s: filter %q configuration: %w", f.Source, f.Name, err)
			}
			if dropped {
				s.Warnings = append(s.Warnings, fmt.Sprintf("%s: the audit collector token is not sent to proxies with mTLS on (the %s cluster authenticates with each proxy's own certificate); remove collector.token", f.Source, meshnames.AuditClusterName))
			}
			f.Config = cfg
		}
		byName[f.Name] = f
	}
	for _, n := range filters.Order() {
		if f, ok := byName[n]; ok {
			s.filters = append(s.filters, f)
		}
	}
	return nil
}

// filtersFor returns the filters node runs, in order.
func (s *Shared) filtersFor(n Node) []ir.Filter {
	var out []ir.Filter
	for _, f := range s.filters {
		if len(f.Services) == 0 {
			out = append(out, f)
			continue
		}
		for _, svc := range f.Services {
			if (n.Gateway && svc == "gateway") || (!n.Gateway && svc == n.Service) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// RolloutBucket is the stable 0-99 bucket of a node id for staged rollouts.
func RolloutBucket(nodeID string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(nodeID))
	return h.Sum32() % 100
}

// moduleFor picks the module a node runs during a staged rollout.
func moduleFor(f ir.Filter, nodeID string) string {
	if f.PreviousSHA256 == "" || f.RolloutPercent >= 100 {
		return f.SHA256
	}
	if RolloutBucket(nodeID) < f.RolloutPercent {
		return f.SHA256
	}
	return f.PreviousSHA256
}

// extensionConfigs are the node's ECDS resources, one per filter it runs.
func (s *Shared) extensionConfigs(n Node) ([]types.Resource, error) {
	var out []types.Resource
	for _, f := range s.filtersFor(n) {
		sha := moduleFor(f, n.ID)
		conf := f.Config
		if s.opts.MTLS && f.Name == "audit" {
			// The collector binds each record to the sender's certificate,
			// so the record names that SPIFFE id, not the node id.
			var err error
			if conf, err = setJSONField(conf, "source", SPIFFEID(s.opts.TrustDomain, s.opts.Datacenter, n.service())); err != nil {
				return nil, fmt.Errorf("filter %s configuration: %w", f.Name, err)
			}
		}
		if f.Name == "audit" && !n.Gateway {
			var err error
			if conf, err = s.withServiceTags(conf, n.service()); err != nil {
				return nil, fmt.Errorf("filter %s configuration: %w", f.Name, err)
			}
		}
		cfg, err := anypb.New(wrapperspb.String(string(conf)))
		if err != nil {
			return nil, fmt.Errorf("filter %s configuration: %w", f.Name, err)
		}
		policy := wasmv3.FailurePolicy_FAIL_CLOSED
		if f.FailOpen {
			policy = wasmv3.FailurePolicy_FAIL_OPEN
		}
		w := &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{
			Name:          f.Name,
			RootId:        f.Name,
			Configuration: cfg,
			FailOpen:      f.FailOpen,
			FailurePolicy: policy,
			Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
				VmId:    f.Name + "@" + shortSHA(sha),
				Runtime: WasmRuntime,
				Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
					HttpUri: &corev3.HttpUri{
						Uri:              strings.TrimSuffix(s.opts.ModuleBaseURL, "/") + "/" + sha,
						HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: meshnames.ModulesClusterName},
						Timeout:          durationpb.New(10 * time.Second),
					},
					Sha256: sha,
				}}},
			}},
		}}
		a, err := anypb.New(w)
		if err != nil {
			return nil, fmt.Errorf("filter %s: %w", f.Name, err)
		}
		out = append(out, &corev3.TypedExtensionConfig{Name: WasmFilterPrefix + f.Name, TypedConfig: a})
	}
	return out, nil
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// NodeKey returns a key that is equal for two nodes exactly when ForNode
// gives them the same resources (given the same secrets): everything of
// the node but its id, unless a staged filter rollout picks modules by id,
// in which case the rollout bucket is part of it. The plane builds one
// snapshot per key, so a thousand sidecars of one service cost one.
func (s *Shared) NodeKey(n Node) string {
	k := fmt.Sprintf("%t|%s|%d|%d|%d|%d", n.Gateway, n.Service, n.InboundPort, n.OutboundPort, n.LocalAppPort, n.ListenPort)
	for _, f := range s.filters {
		if f.PreviousSHA256 != "" && f.RolloutPercent < 100 {
			return k + "|" + strconv.FormatUint(uint64(RolloutBucket(n.ID)), 10)
		}
	}
	return k
}

// dropAuditToken removes collector.token from an audit filter configuration:
// with mTLS no shared secret travels in xDS.
func dropAuditToken(cfg json.RawMessage) (json.RawMessage, bool, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cfg, &m); err != nil {
		return nil, false, errors.New("must be a JSON object (e.g. {\"rules\": [...], \"collector\": {...}}); see filters/audit/README.md")
	}
	var col map[string]json.RawMessage
	if raw, ok := m["collector"]; !ok || json.Unmarshal(raw, &col) != nil {
		return cfg, false, nil
	}
	if _, ok := col["token"]; !ok {
		return cfg, false, nil
	}
	delete(col, "token")
	b, err := json.Marshal(col)
	if err != nil {
		return nil, false, err
	}
	m["collector"] = b
	out, err := json.Marshal(m)
	return out, true, err
}

// setJSONField sets the top-level member key of a JSON object to the string v.
func setJSONField(cfg json.RawMessage, key, v string) (json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(cfg) > 0 {
		if err := json.Unmarshal(cfg, &m); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m[key] = b
	return json.Marshal(m)
}
