package translate

import (
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/internal/redact"
)

// TypeOrder is the order resource types appear in dumps.
var typeOrder = []struct {
	key string
	typ resource.Type
}{
	{"listeners", resource.ListenerType},
	{"routes", resource.RouteType},
	{"clusters", resource.ClusterType},
	{"endpoints", resource.EndpointType},
	{"extension_configs", resource.ExtensionConfigType},
	{"secrets", resource.SecretType},
}

// Validate runs Envoy's proto validation (ValidateAll) on every resource.
func (s *Snapshot) Validate() error {
	var errs []error
	for _, t := range typeOrder {
		for _, r := range s.Resources[t.typ] {
			v, ok := r.(interface{ ValidateAll() error })
			if !ok {
				errs = append(errs, fmt.Errorf("%T has no ValidateAll", r))
				continue
			}
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", t.key, resourceName(r), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Validate runs ValidateAll on the shared resources: each service's
// clusters, load assignments and routes (once per cached entry), the
// non-service clusters, and the route configurations' own fields; mTLS
// cluster variants are checked when made. The plane calls it once per
// build, then ValidateNode per node.
func (s *Shared) Validate() error {
	var errs []error
	for _, e := range s.entries {
		if err := e.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, group := range [][]types.Resource{s.extraClusters, s.extraEndpoints} {
		for _, r := range group {
			if err := validate(r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, rc := range []*routev3.RouteConfiguration{s.outbound, s.gateway} {
		if err := validate(&routev3.RouteConfiguration{Name: rc.GetName()}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validate(&routev3.VirtualHost{Name: s.catchAll.GetName(), Domains: s.catchAll.GetDomains()}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ValidateNode runs ValidateAll on the resources made for this node only
// (listeners, extension configs, secrets, the local app cluster).
func (s *Snapshot) ValidateNode() error {
	var errs []error
	for _, r := range s.own {
		if err := validate(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func validate(r types.Resource) error {
	v, ok := r.(interface{ ValidateAll() error })
	if !ok {
		return fmt.Errorf("%T has no ValidateAll", r)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%T %q: %w", r, resourceName(r), err)
	}
	return nil
}

func resourceName(r types.Resource) string {
	if n, ok := r.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	if n, ok := r.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return ""
}

// Dump returns the snapshot's resources as a JSON-compatible tree (each
// resource in protojson form), keyed by type, in a stable order. Private
// keys and generic secrets are replaced by "[redacted]": a dump is shown to
// operators, diffed and written to change logs, and none of those may hold
// a key.
func (s *Snapshot) Dump() (map[string]any, error) {
	out := map[string]any{"version": s.Version}
	for _, t := range typeOrder {
		var list []any
		for _, r := range s.Resources[t.typ] {
			if sec, ok := r.(*tlsv3.Secret); ok {
				r = RedactSecret(sec)
			}
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("marshal %s: %w", t.key, err)
			}
			b = redact.Token(b) // the dev-only collector token never shows in a dump
			var v any
			if err := yaml.Unmarshal(b, &v); err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		if len(list) > 0 {
			out[t.key] = list
		}
	}
	return out, nil
}

// Redacted is what a secret's private parts are replaced with in dumps.
const Redacted = "[redacted]"

// RedactSecret returns a copy of sec without private key material: the
// certificate chain and trust bundle stay (public), the private key and
// any generic secret become [Redacted].
func RedactSecret(sec *tlsv3.Secret) *tlsv3.Secret {
	c := proto.Clone(sec).(*tlsv3.Secret)
	redacted := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: Redacted}}
	if tc := c.GetTlsCertificate(); tc != nil {
		if tc.PrivateKey != nil {
			tc.PrivateKey = redacted
		}
		if tc.Password != nil {
			tc.Password = redacted
		}
		tc.PrivateKeyProvider = nil
	}
	if gs := c.GetGenericSecret(); gs != nil {
		gs.Secret = redacted
		gs.Secrets = nil
	}
	if sk := c.GetSessionTicketKeys(); sk != nil {
		for i := range sk.Keys {
			sk.Keys[i] = redacted
		}
	}
	return c
}

// YAML renders Dump as YAML.
func (s *Snapshot) YAML() ([]byte, error) {
	d, err := s.Dump()
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(d)
}

// CacheSnapshot returns the go-control-plane snapshot of s.
func (s *Snapshot) CacheSnapshot() (*cache.Snapshot, error) {
	return cache.NewSnapshot(s.Version, s.Resources)
}

// CacheSnapshotConsistent builds the cache snapshot and runs Consistent.
func (s *Snapshot) CacheSnapshotConsistent() error {
	cs, err := s.CacheSnapshot()
	if err != nil {
		return err
	}
	return cs.Consistent()
}
