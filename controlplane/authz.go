package controlplane

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/internal/meshnames"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshwarden/meshwarden/controlplane/auth"
)

// TokenMetadata is the gRPC metadata key (and HTTP header) that carries a
// proxy's or an operator's Consul ACL token, as Consul's own xDS server
// takes it.
const TokenMetadata = "x-consul-token"

// streamAuth is the authenticated identity of one xDS stream.
type streamAuth struct {
	principal auth.Principal
	secret    string // the token secret; never logged, never returned
	cancel    context.CancelCauseFunc

	mu      sync.Mutex
	service string // bound on the first request: the service it acts as
	nodeID  string
}

func (sa *streamAuth) bound() (service, nodeID string) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.service, sa.nodeID
}

type streamAuthKey struct{}

// GRPCServerOptions returns the options the ADS gRPC server must be built
// with: the authentication interceptor, and buffers sized for many
// mostly idle connections (one per proxy): the write buffer is shared
// between writes instead of 32 KiB held per connection, the read buffer is
// 8 KiB. Transport credentials are the caller's (see cmd/meshwarden).
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(8 << 10),
	}
}

// streamInterceptor authenticates a stream before go-control-plane sees it
// and re-checks its credential every Auth.TTL: a revoked token (or one
// that lost its right) ends the stream within that bound.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if s.cfg.Auth == nil {
		return handler(srv, ss)
	}
	sa, err := s.authenticateStream(ss.Context())
	if err != nil {
		s.m.auth.WithLabelValues("xds", authResult(err)).Inc()
		s.log.Warn("xds stream refused", "peer", peerAddr(ss.Context()), "err", err)
		return grpcError(err)
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	sa.cancel = cancel
	ctx = context.WithValue(ctx, streamAuthKey{}, sa)
	err = handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return grpcError(cause)
	}
	return err
}

// authenticateStream takes the caller's credential: a token in the
// x-consul-token metadata (or authorization: Bearer), else a verified mesh
// client certificate.
func (s *Server) authenticateStream(ctx context.Context) (*streamAuth, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if tok := auth.TokenFrom(first(TokenMetadata), first("authorization")); tok != "" {
		p, err := s.cfg.Auth.Authenticate(ctx, tok)
		if err != nil {
			return nil, err
		}
		return &streamAuth{principal: p, secret: tok}, nil
	}
	if id := peerSPIFFE(ctx); id != "" {
		return &streamAuth{principal: auth.Principal{Kind: "spiffe", SPIFFEID: id}}, nil
	}
	return nil, fmt.Errorf("%w: send a Consul ACL token with service:write on this proxy's service as gRPC metadata %q (Envoy: grpc_service initial_metadata; gateway: --token-file), or present a mesh client certificate", auth.ErrUnauthenticated, TokenMetadata)
}

// peerSPIFFE returns the SPIFFE id of a client certificate the TLS
// handshake verified against the mesh CA (see the plane's tls.Config), or "".
func peerSPIFFE(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	return spiffeOf(ti.State.PeerCertificates[0])
}

func spiffeOf(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// recheckStreams closes every stream whose token stopped being valid or
// lost service:write on its bound service, once per Auth.TTL. Streams
// sharing a token cost one check. While Consul is unreachable the last
// decision holds for Auth's grace period, then the streams close.
func (s *Server) recheckStreams(ctx context.Context) {
	if s.cfg.Auth == nil {
		return
	}
	lifecycle.Every(ctx, s.cfg.Auth.TTL(), func() { s.recheckStreamsOnce(ctx) })
}

// recheckStreamsOnce re-verifies every authenticated stream's credential
// once and closes the streams whose credential no longer holds.
func (s *Server) recheckStreamsOnce(ctx context.Context) {
	s.authMu.Lock()
	streams := make([]*streamAuth, 0, len(s.streamAuths))
	for _, sa := range s.streamAuths {
		if sa.secret != "" {
			streams = append(streams, sa)
		}
	}
	s.authMu.Unlock()
	verdict := map[string]error{}
	for _, sa := range streams {
		svc, node := sa.bound()
		key := sa.secret + "\x00" + svc
		err, seen := verdict[key]
		if !seen {
			_, err = s.cfg.Auth.Authenticate(ctx, sa.secret)
			if err == nil && svc != "" {
				err = s.cfg.Auth.Authorize(ctx, sa.secret, auth.ServiceWrite(svc))
			}
			verdict[key] = err
		}
		if err == nil || ctx.Err() != nil {
			continue
		}
		s.m.revoked.Inc()
		s.log.Warn("xds stream closed: its credential no longer holds", "principal", sa.principal.String(), "node", node, "service", svc, "err", err)
		sa.cancel(fmt.Errorf("stream closed: %w", err))
	}
}

// authedStream is the stream the ADS server sees: its context ends when
// the credential is revoked, and RecvMsg returns then, so go-control-plane
// ends the stream (its receive loop does not watch the context).
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

func (a *authedStream) RecvMsg(m any) error {
	done := make(chan error, 1)
	go func() { done <- a.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		return err
	case <-a.ctx.Done():
		return context.Cause(a.ctx)
	}
}

// streamOpened records the stream's identity under go-control-plane's id.
func (s *Server) streamOpened(ctx context.Context, id int64) error {
	if s.cfg.Auth == nil {
		return nil
	}
	sa, ok := ctx.Value(streamAuthKey{}).(*streamAuth)
	if !ok {
		return status.Error(codes.Unauthenticated, "stream was not authenticated")
	}
	s.authMu.Lock()
	s.streamAuths[id] = sa
	s.authMu.Unlock()
	return nil
}

func (s *Server) streamForgotten(id int64) {
	s.authMu.Lock()
	delete(s.streamAuths, id)
	s.authMu.Unlock()
}

// authorizeRequest binds a stream to the service its first request names
// (node.cluster) if its credential may act as that service, and refuses
// any later request for another node or for a secret that is not the
// service's own leaf or the trust bundle.
func (s *Server) authorizeRequest(ctx context.Context, id int64, node *corev3.Node, typeURL string, names []string) error {
	if s.cfg.Auth == nil {
		return nil
	}
	s.authMu.Lock()
	sa := s.streamAuths[id]
	s.authMu.Unlock()
	if sa == nil {
		return status.Error(codes.Unauthenticated, "stream was not authenticated")
	}
	service, nodeID := sa.bound()
	if service == "" {
		cluster := node.GetCluster()
		if cluster == "" || node.GetId() == "" {
			return status.Error(codes.InvalidArgument, "the first request must carry node.id and node.cluster (the service this proxy fronts, or "+meshnames.GatewayNodeCluster+" for a gateway)")
		}
		var err error
		if sa.secret != "" {
			err = s.cfg.Auth.Authorize(ctx, sa.secret, auth.ServiceWrite(cluster))
		} else if got := sa.principal.Service(); got != cluster {
			err = fmt.Errorf("%w: the client certificate is for service %q, not %q", auth.ErrDenied, got, cluster)
		}
		if err != nil {
			s.m.auth.WithLabelValues("xds", authResult(err)).Inc()
			s.log.Warn("xds stream refused: not allowed to act as this service", "principal", sa.principal.String(), "node", node.GetId(), "cluster", cluster, "err", err)
			return grpcError(fmt.Errorf("node.cluster %q: %w", cluster, err))
		}
		s.m.auth.WithLabelValues("xds", "ok").Inc()
		sa.mu.Lock()
		sa.service, sa.nodeID = cluster, node.GetId()
		sa.mu.Unlock()
		service, nodeID = cluster, node.GetId()
	} else if node != nil && (node.GetCluster() != service || node.GetId() != nodeID) {
		return status.Errorf(codes.PermissionDenied, "this stream is bound to node %q of %q; a stream cannot change its node", nodeID, service)
	}
	if typeURL == resource.SecretType {
		for _, n := range names {
			if n != meshnames.LeafSecretName(service) && n != meshnames.RootsSecretName {
				s.m.secretsRefused.Inc()
				s.log.Warn("secret request refused", "principal", sa.principal.String(), "node", nodeID, "service", service, "secret", n)
				return status.Errorf(codes.PermissionDenied, "secret %q is not this proxy's: a proxy of %q receives only %q and %q", n, service, meshnames.LeafSecretName(service), meshnames.RootsSecretName)
			}
		}
	}
	return nil
}

// grpcError maps an auth error to a gRPC status with its explanation.
func grpcError(err error) error {
	switch {
	case errors.Is(err, auth.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, auth.ErrDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	default:
		return status.Error(codes.Unauthenticated, err.Error())
	}
}

func authResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, auth.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, auth.ErrDenied):
		return "denied"
	default:
		return "unauthenticated"
	}
}

// adminHandlerFunc is an admin route that needs to know who calls.
type adminHandlerFunc func(w http.ResponseWriter, r *http.Request, who auth.Principal)

// require authenticates an admin call and checks perm with Consul.
func (s *Server) require(perm auth.Permission, h adminHandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Auth == nil {
			h(w, r, auth.Principal{Kind: "insecure-dev"})
			return
		}
		tok := auth.TokenFrom(r.Header.Get(TokenMetadata), r.Header.Get("Authorization"))
		p, err := s.cfg.Auth.Authenticate(r.Context(), tok)
		if err == nil {
			err = s.cfg.Auth.Authorize(r.Context(), tok, perm)
		}
		s.m.auth.WithLabelValues("admin", authResult(err)).Inc()
		if err != nil {
			code := http.StatusUnauthorized
			switch {
			case errors.Is(err, auth.ErrDenied):
				code = http.StatusForbidden
			case errors.Is(err, auth.ErrUnavailable):
				code = http.StatusServiceUnavailable
			}
			s.log.Warn("admin call refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			writeJSON(w, code, map[string]any{"error": fmt.Sprintf("%s needs a Consul ACL token with %s (X-Consul-Token or Authorization: Bearer): %v", r.URL.Path, perm, err)})
			return
		}
		h(w, r, p)
	}
}
