package controlplane_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/internal/testenv/promseries"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/certs"
	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent"
	"github.com/meshwarden/meshwarden/ir"
)

// securePlane is the plane as `meshwarden controlplane` runs it by
// default: a Consul agent with ACLs on (default deny), the plane's own
// token with auth.PlaneTokenRules, xDS over TLS with its Connect leaf,
// every stream and admin call authenticated.
type securePlane struct {
	agent    *consulagent.Agent
	mgmt     *api.Client
	s        *controlplane.Server
	reg      *prometheus.Registry
	xds      string
	admin    string // https base URL
	caFile   string
	m        *certs.Manager
	tokens   map[string]string // name -> secret
	accessor map[string]string // name -> accessor id
	changes  chan controlplane.PolicyChange
}

func startSecurePlane(t testing.TB) *securePlane {
	return startPlaneOpts(t, planeOpts{ttl: 300 * time.Millisecond})
}

// planeOpts vary the plane for benchmarks: insecure is --insecure-dev
// (plaintext, anonymous; Consul keeps its ACLs), ttl the decision reuse.
type planeOpts struct {
	insecure bool
	ttl      time.Duration
	// with, if set, is a running plane whose Consul (and tokens) this
	// one shares: a second replica.
	with *securePlane
	// store keeps the policy set in Consul KV (replicas); loader, if set,
	// replaces the stub that accepts any files.
	store  bool
	loader controlplane.PolicyLoader
}

func startPlaneOpts(t testing.TB, o planeOpts) *securePlane {
	t.Helper()
	if o.with != nil {
		p := &securePlane{agent: o.with.agent, mgmt: o.with.mgmt, tokens: o.with.tokens, accessor: o.with.accessor,
			changes: make(chan controlplane.PolicyChange, 8)}
		return servePlane(t, p, o)
	}
	agent, mgmt := consultest.LongWith(t, consulagent.Options{ManagementToken: consulagent.NewToken()})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p := &securePlane{agent: agent, mgmt: mgmt, tokens: map[string]string{}, accessor: map[string]string{},
		changes: make(chan controlplane.PolicyChange, 8)}
	for name, spec := range map[string]consulagent.TokenSpec{
		"plane":    {Description: "plane", Rules: auth.PlaneTokenRules},
		"gateway":  {Description: "gateway", Services: []string{meshnames.GatewayNodeCluster}},
		"payments": {Description: "payments sidecar", Services: []string{"payments"}},
		"operator": {Description: "ops-alice", Rules: auth.OperatorTokenRules},
		"reader":   {Description: "auditor-bob", Rules: `operator = "read"` + "\n" + `mesh = "read"`},
	} {
		secret, acc, err := consulagent.CreateToken(ctx, mgmt, spec)
		if err != nil {
			t.Fatal(err)
		}
		p.tokens[name], p.accessor[name] = secret, acc
	}
	for _, svc := range []string{"payments", "orders"} {
		if err := mgmt.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "127.0.0.1", Port: 9000}); err != nil {
			t.Fatal(err)
		}
	}
	return servePlane(t, p, o)
}

// servePlane runs a plane (certificate manager, ADS over TLS, admin API
// over HTTPS) on p's Consul with the plane's token.
func servePlane(t testing.TB, p *securePlane, o planeOpts) *securePlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	agent := p.agent
	cc := api.DefaultConfig()
	cc.Address = agent.Addr()
	cc.Token = p.tokens["plane"]
	client, err := api.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(auth.Options{Consul: cc, TTL: o.ttl, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := authn.CheckEnabled(ctx, ""); err != nil {
		t.Fatal(err)
	}
	p.reg = prometheus.NewRegistry()
	p.m, err = certs.NewManager(certs.Options{Issuer: certs.NewConsulIssuer(client, certs.ConsulOptions{WaitTime: 5 * time.Second}), Registerer: p.reg})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	mdone := make(chan struct{})
	go func() { defer close(mdone); _ = p.m.Run(runCtx) }()
	if _, err := p.m.Wait(ctx, meshnames.PlaneServiceName); err != nil {
		t.Fatalf("the plane's own leaf with auth.PlaneTokenRules: %v", err)
	}
	if o.insecure {
		authn = nil
	}
	loader := o.loader
	if loader == nil {
		loader = func(files map[string][]byte, _ *ir.Catalog) (*ir.PolicySet, error) {
			return &ir.PolicySet{Sources: []string{"x.yaml"}}, nil
		}
	}
	var store *policystore.Store
	if o.store {
		store = policystore.New(client, "")
	}
	p.s, err = controlplane.NewWithContext(t.Context(), controlplane.Config{
		Consul: client, Auth: authn, InsecureNoAuth: o.insecure, Secrets: p.m, Debounce: 5 * time.Millisecond, Registry: p.reg,
		Store: store, Replica: "replica-" + consulagent.NewToken()[:8], LoadPolicies: loader,
		RecordChange: func(_ context.Context, c controlplane.PolicyChange) error { p.changes <- c; return nil },
		Translate:    translate.Options{ModuleBaseURL: "http://127.0.0.1:1/modules/"},
		Watch:        consulwatch.Options{WaitTime: 10 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := p.s.GRPCServerOptions()
	if !o.insecure {
		opts = append(opts, grpc.Creds(credentials.NewTLS(p.m.OptionalClientTLSConfig(meshnames.PlaneServiceName))))
	}
	g := grpc.NewServer(opts...)
	p.s.Register(g)
	go func() { _ = g.Serve(lis) }()
	pdone := make(chan struct{})
	go func() { defer close(pdone); _ = p.s.Run(runCtx) }()
	alis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := &http.Server{Handler: p.s.AdminHandler(false), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{GetCertificate: p.m.GetCertificate(meshnames.PlaneServiceName)}}
	go func() { _ = admin.ServeTLS(alis, "", "") }()
	t.Cleanup(func() { admin.Close(); g.Stop(); stop(); <-pdone; <-mdone })
	p.xds, p.admin = lis.Addr().String(), "https://"+alis.Addr().String()
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p.caFile, certs.EncodePEM(p.m.Roots()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// stream opens an ADS stream to the plane with the given dial options and
// token ("" sends none) and sends the first request for typeURL.
func (p *securePlane) stream(t testing.TB, dial []grpc.DialOption, token string, node *corev3.Node, typeURL string, names ...string) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(p.xds, dial...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() { cancel(); conn.Close() })
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-consul-token", token)
	}
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil { // e.g. a refused handshake: Recv reports it
		return failedStream{err: err}
	}
	// A refused stream may fail here already; Recv reports why.
	_ = st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names})
	return st
}

// failedStream is a stream that could not be opened.
type failedStream struct {
	discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	err error
}

func (f failedStream) Recv() (*discovery.DiscoveryResponse, error) { return nil, f.err }
func (f failedStream) Send(*discovery.DiscoveryRequest) error      { return f.err }
func (f failedStream) CloseSend() error                            { return f.err }

func (p *securePlane) tlsDial(t testing.TB) []grpc.DialOption {
	t.Helper()
	cfg, err := auth.PlaneTLS(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
}

// firstResponse returns the stream's first response or its error.
func firstResponse(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient) (*discovery.DiscoveryResponse, error) {
	return st.Recv()
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

func gw(id string) *corev3.Node { return &corev3.Node{Id: id, Cluster: meshnames.GatewayNodeCluster} }

// secretDenied asks st for the secrets names and reads until the plane ends
// the stream with PermissionDenied (what names the case in failures); no
// SDS response before that may carry the secret leaf.
func secretDenied(t *testing.T, st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, leaf, what string, names ...string) {
	t.Helper()
	if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := st.Recv()
		if err != nil {
			wantCode(t, err, codes.PermissionDenied, what)
			return
		}
		if r.GetTypeUrl() == resource.SecretType && secretsOf(t, r)[leaf] != nil {
			t.Fatalf("%s: %s reached the stream", what, leaf)
		}
	}
}

// secretsOf decodes an SDS response.
func secretsOf(t *testing.T, r *discovery.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, a := range r.GetResources() {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		out[s.GetName()] = &s
	}
	return out
}

// TestAuthXDS reproduces the attacks of the zero-trust review against the
// ADS server and checks that each now fails to get a key.
func TestAuthXDS(t *testing.T) {
	p := startSecurePlane(t)
	leafGW, leafPay := meshnames.LeafSecretName(meshnames.GatewayNodeCluster), meshnames.LeafSecretName("payments")

	t.Run("plaintext client against the TLS port", func(t *testing.T) {
		conn, err := grpc.NewClient(p.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-consul-token", p.tokens["gateway"]), 10*time.Second)
		defer cancel()
		st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err == nil {
			_ = st.Send(&discovery.DiscoveryRequest{Node: gw("gw-plain"), TypeUrl: resource.SecretType})
			_, err = st.Recv()
		}
		wantCode(t, err, codes.Unavailable, "plaintext stream")
	})
	t.Run("anonymous TLS stream", func(t *testing.T) {
		_, err := firstResponse(p.stream(t, p.tlsDial(t), "", gw("gw-anon"), resource.SecretType))
		wantCode(t, err, codes.Unauthenticated, "anonymous stream")
		if !strings.Contains(err.Error(), "x-consul-token") {
			t.Errorf("the refusal does not say what to send: %v", err)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		_, err := firstResponse(p.stream(t, p.tlsDial(t), consulagent.NewToken(), gw("gw-wrong"), resource.SecretType))
		wantCode(t, err, codes.Unauthenticated, "unknown token")
	})
	t.Run("impersonating another node.cluster", func(t *testing.T) {
		_, err := firstResponse(p.stream(t, p.tlsDial(t), p.tokens["gateway"], &corev3.Node{Id: "pay-x", Cluster: "payments"}, resource.SecretType, leafPay))
		wantCode(t, err, codes.PermissionDenied, "gateway token acting as payments")
	})
	t.Run("leaf of an invented service", func(t *testing.T) {
		_, err := firstResponse(p.stream(t, p.tlsDial(t), p.tokens["gateway"], &corev3.Node{Id: "cl-1", Cluster: "core-ledger"}, resource.SecretType))
		wantCode(t, err, codes.PermissionDenied, "gateway token acting as core-ledger")
		if c := p.m.Certificate("core-ledger"); c != nil {
			t.Errorf("the plane minted a leaf for core-ledger: %s", c.SPIFFEID)
		}
	})
	t.Run("own leaf and the trust bundle only", func(t *testing.T) {
		st := p.stream(t, p.tlsDial(t), p.tokens["gateway"], gw("gw-1"), resource.SecretType, leafGW, meshnames.RootsSecretName)
		deadline := time.Now().Add(20 * time.Second)
		var got map[string]*tlsv3.Secret
		for len(got) < 2 && time.Now().Before(deadline) {
			r, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			got = secretsOf(t, r)
			_ = st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: []string{leafGW, meshnames.RootsSecretName}, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
		}
		if got[leafGW] == nil || got[meshnames.RootsSecretName] == nil || len(got) != 2 {
			t.Fatalf("gateway got secrets %v, want exactly its leaf and the roots", keys(got))
		}
		// The same stream now asks for payments' leaf: refused and counted.
		before := testutil.ToFloat64(counter(t, p.reg, "meshwarden_controlplane_secret_requests_refused_total"))
		secretDenied(t, st, leafPay, "asking for another service's leaf", leafGW, leafPay)
		if after := testutil.ToFloat64(counter(t, p.reg, "meshwarden_controlplane_secret_requests_refused_total")); after != before+1 {
			t.Errorf("refused secret requests %v -> %v, want +1", before, after)
		}
	})
	t.Run("node id of a connected proxy under another cluster", func(t *testing.T) {
		st := p.stream(t, p.tlsDial(t), p.tokens["gateway"], gw("shared-id"), resource.ClusterType)
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		_, err := firstResponse(p.stream(t, p.tlsDial(t), p.tokens["payments"], &corev3.Node{Id: "shared-id", Cluster: "payments"}, resource.SecretType, leafPay))
		wantCode(t, err, codes.PermissionDenied, "payments reusing the gateway's node id")
	})
	t.Run("mesh client certificate instead of a token", func(t *testing.T) {
		cfg, _ := auth.PlaneTLS(p.caFile)
		cfg.Certificates = []tls.Certificate{consultest.Leaf(t, p.mgmt, "payments")}
		dial := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
		st := p.stream(t, dial, "", &corev3.Node{Id: "pay-cert", Cluster: "payments"}, resource.ClusterType)
		if _, err := st.Recv(); err != nil {
			t.Fatalf("payments' certificate acting as payments: %v", err)
		}
		_, err := firstResponse(p.stream(t, dial, "", gw("gw-by-cert"), resource.SecretType, leafGW))
		wantCode(t, err, codes.PermissionDenied, "payments' certificate acting as the gateway")
	})
}

// TestAuthRevokedTokenClosesStream deletes a connected proxy's token: its
// stream is closed within the re-check bound, and the token gets nothing new.
func TestAuthRevokedTokenClosesStream(t *testing.T) {
	p := startSecurePlane(t)
	st := p.stream(t, p.tlsDial(t), p.tokens["payments"], &corev3.Node{Id: "pay-1", Cluster: "payments"}, resource.ClusterType)
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := p.agent.DeleteToken(context.Background(), p.accessor["payments"]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		_, err := st.Recv()
		if err == nil {
			continue
		}
		wantCode(t, err, codes.Unauthenticated, "stream of a revoked token")
		break
	}
	// TTL 300ms: closed within a few re-checks, far inside the stream's 30s.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("revoked stream closed after %s", d)
	}
	if n := testutil.ToFloat64(counter(t, p.reg, "meshwarden_controlplane_xds_streams_revoked_total")); n < 1 {
		t.Errorf("revocations counted: %v", n)
	}
	_, err := firstResponse(p.stream(t, p.tlsDial(t), p.tokens["payments"], &corev3.Node{Id: "pay-2", Cluster: "payments"}, resource.ClusterType))
	wantCode(t, err, codes.Unauthenticated, "new stream of a revoked token")
}

// TestAuthConsulUnreachable stops Consul: a connected proxy keeps its
// stream (last decision, within the grace period); a new one is refused
// with a reason.
func TestAuthConsulUnreachable(t *testing.T) {
	p := startSecurePlane(t)
	st := p.stream(t, p.tlsDial(t), p.tokens["gateway"], gw("gw-1"), resource.ClusterType)
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	p.agent.Stop()
	_, err := firstResponse(p.stream(t, p.tlsDial(t), p.tokens["payments"], &corev3.Node{Id: "pay-9", Cluster: "payments"}, resource.ClusterType))
	wantCode(t, err, codes.Unavailable, "new stream while Consul is down")
	if !strings.Contains(err.Error(), "cannot verify credentials") {
		t.Errorf("refusal does not say why: %v", err)
	}
	// The old stream survives several re-checks (TTL 300ms, grace 1m).
	errc := make(chan error, 1)
	go func() { _, err := st.Recv(); errc <- err }()
	select {
	case err := <-errc:
		t.Fatalf("the connected proxy lost its stream during the outage: %v", err)
	case <-time.After(2 * time.Second):
	}
}

// TestAuthAdmin: every /v1 call needs a token with the right role, the
// change log records the authenticated principal, and no key leaves the
// plane through the admin API.
func TestAuthAdmin(t *testing.T) {
	p := startSecurePlane(t)
	// Connect a gateway so there is a node (with its leaf) to dump; the
	// leaf is issued on the node's first request and arrives in a later
	// response.
	leaf := meshnames.LeafSecretName(meshnames.GatewayNodeCluster)
	st := p.stream(t, p.tlsDial(t), p.tokens["gateway"], gw("gw-1"), resource.SecretType, leaf, meshnames.RootsSecretName)
	for deadline := time.Now().Add(20 * time.Second); ; {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if secretsOf(t, r)[leaf] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway's leaf did not arrive within 20s")
		}
		_ = st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: []string{leaf, meshnames.RootsSecretName}, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
	}
	client := func(token string) *http.Client {
		if token == "" { // TLS to the right plane, but no credential
			cfg, err := auth.PlaneTLS(p.caFile)
			if err != nil {
				t.Fatal(err)
			}
			return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
		}
		hc, err := auth.ClientOptions{CAFile: p.caFile, Token: token}.HTTPClient()
		if err != nil {
			t.Fatal(err)
		}
		return hc
	}
	call := func(hc *http.Client, method, path string, hdr map[string]string) (int, string) {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"x.yaml": "kind: AuditPolicy"}`)
		}
		req, _ := http.NewRequest(method, p.admin+path, body)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	forged := map[string]string{"X-Meshwarden-Identity": "alice@security"}
	for _, tc := range []struct {
		who, method, path string
		hdr               map[string]string
		want              int
	}{
		{"", http.MethodGet, "/v1/status", nil, 401},
		{"", http.MethodGet, "/v1/config_dump?node=gw-1", nil, 401},
		{"", http.MethodPost, "/v1/policies:apply", forged, 401},
		{"", http.MethodGet, "/metrics", nil, 401},
		{"gateway", http.MethodGet, "/v1/status", nil, 403},
		{"gateway", http.MethodGet, "/v1/config_dump?node=gw-1", nil, 403},
		{"gateway", http.MethodPost, "/v1/policies:apply", forged, 403},
		{"reader", http.MethodGet, "/v1/status", nil, 200},
		{"reader", http.MethodGet, "/v1/config_dump?node=gw-1", nil, 200},
		{"reader", http.MethodPost, "/v1/policies:translate", nil, 200},
		{"reader", http.MethodPost, "/v1/policies:apply", nil, 403},
		{"operator", http.MethodGet, "/metrics", nil, 200},
		{"operator", http.MethodPost, "/v1/policies:apply", forged, 200},
	} {
		code, body := call(client(p.tokens[tc.who]), tc.method, tc.path, tc.hdr)
		if code != tc.want {
			t.Errorf("%q %s %s: %d, want %d: %.300s", tc.who, tc.method, tc.path, code, tc.want, body)
		}
		for _, secret := range []string{"PRIVATE KEY", p.tokens["gateway"], p.tokens["operator"]} {
			if strings.Contains(body, secret) {
				t.Errorf("%q %s %s: the answer holds a secret (%.20s…)", tc.who, tc.method, tc.path, secret)
			}
		}
		if tc.path == "/v1/config_dump?node=gw-1" && code == 200 && !strings.Contains(body, translate.Redacted) {
			t.Errorf("config dump shows no redacted key:\n%.2000s", body)
		}
	}
	select {
	case c := <-p.changes:
		want := "consul token " + p.accessor["operator"] + " (ops-alice)"
		if c.Identity != want {
			t.Errorf("change recorded as %q, want the authenticated %q (never the forged header)", c.Identity, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the operator's apply was not recorded")
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// counter finds a registered collector by metric name.
func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	if promseries.Family(t, reg, name) == nil {
		t.Fatalf("metric %s is not registered", name)
	}
	return gathered{reg: reg, name: name}
}

// gathered adapts one gathered metric family to testutil.ToFloat64.
type gathered struct {
	reg  *prometheus.Registry
	name string
}

func (g gathered) Describe(ch chan<- *prometheus.Desc) {
	ch <- prometheus.NewDesc(g.name, "gathered", nil, nil)
}

func (g gathered) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "gathered", nil, nil), prometheus.CounterValue, sum)
	}
}

// TestAuthForeignCA: a client certificate with payments' SPIFFE id but
// signed by another CA fails the handshake; the plane's certificate is
// likewise refused by a client trusting another CA.
func TestAuthForeignCA(t *testing.T) {
	p := startSecurePlane(t)
	foreign := foreignCert(t, "spiffe://evil.example/ns/default/dc/dc1/svc/payments")
	cfg, err := auth.PlaneTLS(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{foreign}
	_, err = firstResponse(p.stream(t, []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, "",
		&corev3.Node{Id: "pay-evil", Cluster: "payments"}, resource.SecretType, meshnames.LeafSecretName("payments")))
	wantCode(t, err, codes.Unavailable, "client certificate of another CA")

	// A client that trusts another CA does not accept the plane.
	caFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(caFile, foreignPEM(t, foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	other, err := auth.PlaneTLS(caFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = firstResponse(p.stream(t, []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(other))}, p.tokens["payments"],
		&corev3.Node{Id: "pay-2", Cluster: "payments"}, resource.ClusterType))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "does not chain") {
		t.Errorf("client trusting another CA: %v; want the handshake refused because the plane does not chain to it", err)
	}
}

// foreignCert is a self-signed certificate (its own CA) carrying id.
func foreignCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "evil"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func foreignPEM(t *testing.T, c tls.Certificate) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
}

// TestAuthSotWAndDeltaStreamsKeepTheirIdentity: go-control-plane numbers
// SotW and delta streams from 1 each. The plane once kept a stream's
// identity by that number, so a delta stream overwrote the SotW stream with
// the same number: the gateway's stream was then judged by payments'
// credential and could ask for payments' leaf.
func TestAuthSotWAndDeltaStreamsKeepTheirIdentity(t *testing.T) {
	p := startSecurePlane(t)
	leafPay := meshnames.LeafSecretName("payments")
	sotw := p.stream(t, p.tlsDial(t), p.tokens["gateway"], gw("gw-sotw"), resource.ClusterType)
	if _, err := sotw.Recv(); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.xds, p.tlsDial(t)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-consul-token", p.tokens["payments"]), 30*time.Second)
	t.Cleanup(func() { cancel(); conn.Close() })
	delta, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "pay-delta", Cluster: "payments"},
		TypeUrl: resource.SecretType, ResourceNamesSubscribe: []string{leafPay}}); err != nil {
		t.Fatal(err)
	}
	r, err := delta.Recv()
	if err != nil {
		t.Fatalf("payments' delta stream asking for its own leaf: %v", err)
	}
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != leafPay {
		t.Fatalf("payments' delta stream got %d resources, want its leaf", len(r.GetResources()))
	}
	// The gateway's SotW stream now asks for payments' leaf: still judged
	// by the gateway's token.
	secretDenied(t, sotw, leafPay, "the gateway's SotW stream asking for payments' leaf", leafPay)
}
