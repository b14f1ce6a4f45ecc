package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/meshnames"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/translate"
)

// Trust is what the demo's attacker got from the plane.
type Trust struct {
	// AnonymousXDS and ImpersonatedXDS are the gRPC codes of an ADS
	// stream without a token and of the gateway's token claiming to be
	// payments (to get payments' leaf).
	AnonymousXDS, ImpersonatedXDS string
	// AnonymousAdmin is the HTTP status of GET /v1/config_dump without a
	// token; OperatorDump of the same call with the operator's token.
	AnonymousAdmin, OperatorDump int
	// DumpRedacted: the operator's dump of the gateway holds no private
	// key; DumpHasLeaf: it holds the gateway's leaf (with mTLS), whose key
	// shows as [redacted].
	DumpRedacted, DumpHasLeaf bool
}

// printTrust tries what the zero-trust review did as an attacker.
func printTrust(ctx context.Context, out io.Writer, st *Stack) *Trust {
	tr := &Trust{}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tr.AnonymousXDS = adsAttempt(ctx, st, "", &corev3.Node{Id: "intruder", Cluster: meshnames.GatewayNodeCluster})
	fmt.Fprintf(out, "  ADS stream over TLS without a token (wants the gateway's leaf)        -> %s\n", tr.AnonymousXDS)
	gwToken, _ := os.ReadFile(st.GatewayTokenFile)
	tr.ImpersonatedXDS = adsAttempt(ctx, st, strings.TrimSpace(string(gwToken)), &corev3.Node{Id: "intruder-2", Cluster: "payments"})
	fmt.Fprintf(out, "  the gateway's own token claiming node.cluster=payments (payments' key) -> %s\n", tr.ImpersonatedXDS)
	dump := st.AdminURL("/v1/config_dump?node=gateway-demo")
	if hc, err := (auth.ClientOptions{CAFile: st.CAFile, Insecure: st.opts.InsecurePlane}).HTTPClient(); err == nil {
		tr.AnonymousAdmin, _ = httpget.Text(ctx, hc, dump)
	}
	fmt.Fprintf(out, "  GET /v1/config_dump without a token                                   -> HTTP %d\n", tr.AnonymousAdmin)
	if hc, err := st.AdminClient(st.OperatorTokenFile); err == nil {
		var body string
		tr.OperatorDump, body = httpget.Text(ctx, hc, dump)
		tr.DumpHasLeaf = strings.Contains(body, meshnames.LeafSecretName(meshnames.GatewayNodeCluster))
		tr.DumpRedacted = tr.OperatorDump == http.StatusOK && !strings.Contains(body, "PRIVATE KEY") &&
			(!tr.DumpHasLeaf || strings.Contains(body, translate.Redacted))
	}
	what := "no private key in it"
	switch {
	case !tr.DumpRedacted:
		what = "A PRIVATE KEY IS SHOWN"
	case tr.DumpHasLeaf:
		what = "the gateway's leaf with its private key " + translate.Redacted
	}
	fmt.Fprintf(out, "  the same with the operator's token (mesh:read)                        -> HTTP %d, %s\n", tr.OperatorDump, what)
	fmt.Fprintf(out, "  as an operator: meshwarden policy status %s\n", strings.Join(st.PlaneFlags(), " "))
	return tr
}

// adsAttempt opens an ADS stream as node with token ("" for none) and
// returns the gRPC code of the first answer ("OK" if it got resources).
func adsAttempt(ctx context.Context, st *Stack, token string, node *corev3.Node) string {
	cfg, err := auth.PlaneTLS(st.CAFile)
	if err != nil {
		return err.Error()
	}
	conn, err := grpc.NewClient(st.PlaneXDS, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-consul-token", token)
	}
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err == nil {
		_ = s.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.SecretType, ResourceNames: []string{meshnames.LeafSecretName(node.GetCluster())}})
		_, err = s.Recv()
	}
	return status.Code(err).String()
}
