// Package xdsclient is a state-of-the-world ADS client: it subscribes to
// Envoy xDS resource types over one AggregatedDiscoveryService stream, hands
// every response to a Handler, ACKs what the handler accepts and NACKs what it
// rejects (with the handler's reason as error_detail), and reconnects with
// exponential backoff while the control plane is unreachable. The handler
// keeps serving its last accepted state in the meantime; the client holds no
// configuration of its own.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/types/known/anypb"
)

// Handler consumes the resources the client receives.
type Handler interface {
	// OnResources receives the complete current set of one resource type
	// (state of the world). A nil error ACKs the response; an error NACKs it
	// with the error's text as error_detail, and the handler must keep its
	// previous state of that type.
	OnResources(ctx context.Context, typeURL, version string, resources []*anypb.Any) error
	// Subscriptions returns the resource names wanted per type URL. A type
	// mapped to nil is a wildcard subscription (LDS, CDS); a type absent from
	// the map is not subscribed yet. It is called after every response.
	Subscriptions() map[string][]string
}

// Config configures a Client.
type Config struct {
	// Target is the control plane's gRPC address (host:port), or several
	// replicas' addresses separated by commas: the client uses one and
	// moves to another when its stream or connection fails. Required.
	Target string
	// Node identifies this proxy to the plane (id, cluster, metadata). Required.
	Node *core.Node
	// DialOptions carry the transport credentials (TLS and the proxy's
	// token). Required: plaintext only where the caller passes grpc's
	// insecure credentials itself, for a development plane.
	DialOptions []grpc.DialOption
	// MinBackoff and MaxBackoff bound the reconnect delay. Zero means 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives connection and NACK diagnostics. Nil discards them.
	Logger *slog.Logger
	// OnEvent, when set, is told about every ACK, NACK, connect and disconnect
	// (metrics hook). It must not block.
	OnEvent func(Event)
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	Connected EventKind = iota
	Disconnected
	Ack
	Nack
)

// Event reports a change of the client's state.
type Event struct {
	Kind    EventKind
	TypeURL string
	Version string
	Err     error
}

// Client is an ADS client. Run it with Run; it is not reusable after Run returns.
type Client struct {
	cfg       Config
	h         Handler
	connected atomic.Bool
}

// New returns a client that feeds h.
func New(cfg Config, h Handler) (*Client, error) {
	if cfg.Target == "" {
		return nil, errors.New("xds client: target is empty: set the control plane address (host:port)")
	}
	if cfg.Node == nil || cfg.Node.GetId() == "" {
		return nil, errors.New("xds client: node id is empty: set a node id")
	}
	if len(cfg.DialOptions) == 0 {
		return nil, errors.New("xds client: no transport credentials: set DialOptions (TLS and a token; insecure credentials only for a development plane)")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, h: h}, nil
}

// splitTargets splits a comma-separated address list.
func splitTargets(t string) []string {
	var out []string
	for _, a := range strings.Split(t, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Connected reports whether a stream to the plane is currently open.
func (c *Client) Connected() bool { return c.connected.Load() }

// Run keeps an ADS stream open until ctx ends, reconnecting with jittered
// exponential backoff. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	opts := c.cfg.DialOptions
	target := c.cfg.Target
	if addrs := splitTargets(target); len(addrs) > 1 {
		// Several replicas: a static resolver with every address and
		// pick_first, which connects to the first that answers and moves
		// on when that connection breaks.
		r := manual.NewBuilderWithScheme("mw-planes")
		state := resolver.State{}
		for _, a := range addrs {
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
		}
		r.InitialState(state)
		opts = append(opts[:len(opts):len(opts)], grpc.WithResolvers(r))
		target = r.Scheme() + ":///planes"
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return fmt.Errorf("xds client: dial %s: %w: check --xds-address", c.cfg.Target, err)
	}
	defer conn.Close()
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	backoff := c.cfg.MinBackoff
	for {
		start := time.Now()
		err := c.stream(ctx, ads)
		if c.connected.Swap(false) {
			c.event(Event{Kind: Disconnected, Err: err})
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 10*time.Second {
			backoff = c.cfg.MinBackoff // the stream was healthy for a while
		}
		c.cfg.Logger.Warn("xds stream ended; reconnecting", "target", c.cfg.Target, "err", err, "backoff", backoff)
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)/2+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// typeState is the protocol state of one subscribed type on one stream.
type typeState struct {
	version, nonce string
	names          []string
	wildcard       bool
}

func (c *Client) stream(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.StreamAggregatedResources(ctx, grpc.WaitForReady(false))
	if err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
	states := map[string]*typeState{}
	send := func(typeURL string, s *typeState, nack error) error {
		req := &discovery.DiscoveryRequest{
			Node: c.cfg.Node, TypeUrl: typeURL, VersionInfo: s.version,
			ResponseNonce: s.nonce, ResourceNames: s.names,
		}
		if nack != nil {
			req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
		}
		return st.Send(req)
	}
	// subscribe sends a request for every type whose wanted names changed.
	subscribe := func(skip string) error {
		want := c.h.Subscriptions()
		for _, t := range slices.Sorted(maps.Keys(want)) {
			names := slices.Clone(want[t])
			slices.Sort(names)
			names = slices.Compact(names)
			s, changed := states[t], false
			switch {
			case s == nil:
				s, changed = &typeState{wildcard: want[t] == nil, names: names}, true
				states[t] = s
			case !s.wildcard && len(names) > 0 && !slices.Equal(s.names, names):
				// An empty name list would mean a wildcard in SotW: the
				// last subscription is kept instead.
				s.names, changed = names, true
			}
			if !changed || t == skip {
				continue
			}
			if err := send(t, s, nil); err != nil {
				return fmt.Errorf("send %s request: %w", t, err)
			}
		}
		return nil
	}
	if err := subscribe(""); err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if !c.connected.Swap(true) {
			c.event(Event{Kind: Connected})
		}
		s := states[resp.GetTypeUrl()]
		if s == nil {
			c.cfg.Logger.Warn("xds response for a type never requested; ignored", "type", resp.GetTypeUrl())
			continue
		}
		s.nonce = resp.GetNonce()
		herr := c.h.OnResources(ctx, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetResources())
		if herr != nil {
			c.cfg.Logger.Error("xds NACK", "type", resp.GetTypeUrl(), "version", resp.GetVersionInfo(), "err", herr)
			c.event(Event{Kind: Nack, TypeURL: resp.GetTypeUrl(), Version: resp.GetVersionInfo(), Err: herr})
			if err := send(resp.GetTypeUrl(), s, herr); err != nil {
				return fmt.Errorf("send NACK: %w", err)
			}
			continue
		}
		s.version = resp.GetVersionInfo()
		c.event(Event{Kind: Ack, TypeURL: resp.GetTypeUrl(), Version: s.version})
		// The ACK carries the names wanted now, so a grown subscription of
		// this same type needs no second request.
		if err := subscribe(resp.GetTypeUrl()); err != nil {
			return err
		}
		if err := send(resp.GetTypeUrl(), s, nil); err != nil {
			return fmt.Errorf("send ACK: %w", err)
		}
	}
}

func (c *Client) event(e Event) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(e)
	}
}
