package controlplane

import (
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"
)

// premarshaled is an xDS resource whose wire form was computed once.
//
// Why: go-control-plane v0.14's snapshot cache wraps every resource anew for
// every watch it answers (createResponse), so each resource is marshalled
// once per stream per push: with 1,000 sidecars a health flip marshalled
// every cluster load assignment 1,000 times, and that was most of the
// plane's CPU (docs/RATIONALE-controlplane.md, "Fan-out"). A premarshaled
// resource hands proto.Marshal its cached bytes, so a resource is marshalled
// once per version, whatever the number of streams. Everything else
// (reflection, names) is the real message's.
type premarshaled struct {
	msg     proto.Message
	name    string
	raw     []byte
	methods protoiface.Methods
}

func newPremarshaled(msg proto.Message, name string, raw []byte) *premarshaled {
	p := &premarshaled{msg: msg, name: name, raw: raw}
	p.methods = protoiface.Methods{
		Flags: protoiface.SupportMarshalDeterministic,
		Size: func(protoiface.SizeInput) protoiface.SizeOutput {
			return protoiface.SizeOutput{Size: len(p.raw)}
		},
		Marshal: func(in protoiface.MarshalInput) (protoiface.MarshalOutput, error) {
			return protoiface.MarshalOutput{Buf: append(in.Buf, p.raw...)}, nil
		},
		// The bytes come from a message that marshalled completely.
		CheckInitialized: func(protoiface.CheckInitializedInput) (protoiface.CheckInitializedOutput, error) {
			return protoiface.CheckInitializedOutput{}, nil
		},
	}
	return p
}

// ProtoReflect returns the real message's reflection with marshalling
// methods that return the cached bytes.
func (p *premarshaled) ProtoReflect() protoreflect.Message {
	return premarshaledReflect{Message: p.msg.ProtoReflect(), p: p}
}

// GetName is the resource name (types.ResourceWithName).
func (p *premarshaled) GetName() string { return p.name }

type premarshaledReflect struct {
	protoreflect.Message
	p *premarshaled
}

func (r premarshaledReflect) Interface() protoreflect.ProtoMessage { return r.p }

func (r premarshaledReflect) ProtoMethods() *protoiface.Methods { return &r.p.methods }

// marshalMemo maps a resource (by pointer: translate shares one message
// between every node that gets it, and keeps unchanged services' messages
// from one build to the next) to its premarshaled form. cur holds what the
// current build used; prev what the build before used, carried over when
// still the same message and dropped otherwise, so memory follows what is
// in use.
type marshalMemo struct {
	cur, prev map[proto.Message]*premarshaled
}

func newMarshalMemo(prev *marshalMemo) *marshalMemo {
	m := &marshalMemo{cur: map[proto.Message]*premarshaled{}}
	if prev != nil {
		m.prev = prev.cur
	}
	return m
}

// wrap returns r premarshaled, from the memo when r was seen before.
func (m *marshalMemo) wrap(r types.Resource) (types.Resource, error) {
	if p, ok := m.cur[r]; ok {
		return p, nil
	}
	if p, ok := m.prev[r]; ok {
		m.cur[r] = p
		return p, nil
	}
	raw, err := cache.MarshalResource(r)
	if err != nil {
		return nil, fmt.Errorf("marshal %T %q: %w", r, cache.GetResourceName(r), err)
	}
	p := newPremarshaled(r, cache.GetResourceName(r), raw)
	m.cur[r] = p
	return p, nil
}

// publishable returns the cache snapshot to publish for resources: the
// same version and resources, premarshaled. The caller has already checked
// the plain snapshot with Consistent (which needs the concrete types).
func (m *marshalMemo) publishable(version string, resources map[resource.Type][]types.Resource) (*cache.Snapshot, error) {
	out := make(map[resource.Type][]types.Resource, len(resources))
	for typ, list := range resources {
		wrapped := make([]types.Resource, len(list))
		for i, r := range list {
			w, err := m.wrap(r)
			if err != nil {
				return nil, err
			}
			wrapped[i] = w
		}
		out[typ] = wrapped
	}
	return cache.NewSnapshot(version, out)
}

var _ types.ResourceWithName = (*premarshaled)(nil)
