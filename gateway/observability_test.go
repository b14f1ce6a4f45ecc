package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestTracingAndDrain(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	plane := startPlane(t)
	release := make(chan struct{})
	up := startUpstream(t, "up")
	slow := startUpstream(t, "slow")
	slow.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "slow done")
	})
	gw := startGateway(t, plane, "gw-obs", func(c *Config) { c.TracerProvider = tp })
	rc := routeConfig(
		&route.Route{Name: "slow", Match: prefixMatch("/slow"), Action: routeTo("slow")},
		&route.Route{Name: "up", Match: prefixMatch("/"), Action: routeTo("up")},
	)
	plane.set("gw-obs", httpListener(t, gw.port(), "r"), rc, edsCluster("up", nil), edsCluster("slow", nil),
		cla("up", lbEndpoint(up.addr(), 0)), cla("slow", lbEndpoint(slow.addr(), 0)))
	eventually(t, 10*time.Second, "readiness", gw.g.Ready)

	t.Run("W3C propagation with server and client spans", func(t *testing.T) {
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		code, _, _ := get(t, &http.Client{}, gw.url+"/", "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		tp := (*up.last.Load()).Get("Traceparent")
		if !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, "00f067aa0ba902b7") {
			t.Fatalf("upstream traceparent %q: want the same trace with the gateway's span as parent", tp)
		}
		// The response is flushed to the client as it streams (gRPC and
		// streaming need that), so the server span may end just after the
		// client has read it: wait for both spans.
		var server, client *tracetest.SpanStub
		eventually(t, 5*time.Second, "server and client spans exported", func() bool {
			server, client = nil, nil
			for _, s := range exp.GetSpans() {
				switch s.SpanKind {
				case trace.SpanKindServer:
					server = &s
				case trace.SpanKindClient:
					client = &s
				}
			}
			return server != nil && client != nil
		})
		if server == nil || client == nil || server.SpanContext.TraceID().String() != traceID ||
			client.Parent.SpanID() != server.SpanContext.SpanID() || !strings.Contains(tp, client.SpanContext.SpanID().String()) {
			t.Fatalf("spans: server %+v client %+v", server, client)
		}
	})

	t.Run("config update does not drop in-flight requests", func(t *testing.T) {
		hold := make(chan struct{})
		slow2 := startUpstream(t, "slow2")
		slow2.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-hold
			_, _ = io.WriteString(w, "slow2 done")
		})
		rc2 := routeConfig(
			&route.Route{Name: "slow", Match: prefixMatch("/slow2"), Action: routeTo("slow")},
			&route.Route{Name: "up", Match: prefixMatch("/"), Action: routeTo("up")},
		)
		plane.set("gw-obs", httpListener(t, gw.port(), "r"), rc2, edsCluster("up", nil), edsCluster("slow", nil),
			cla("up", lbEndpoint(up.addr(), 0)), cla("slow", lbEndpoint(slow2.addr(), 0)))
		eventually(t, 10*time.Second, "slow2 config", func() bool {
			return gw.g.model.Load().clusters["slow"].endpoints[0].st.addr == slow2.addr()
		})
		done := getAsync(gw.url + "/slow2")
		eventually(t, 5*time.Second, "request in flight", func() bool { return gw.g.acquire() != nil && activeRefs(gw.g) > 1 })
		before := gw.g.model.Load()
		// A new config removes the cluster the request is using.
		plane.set("gw-obs", httpListener(t, gw.port(), "r"), rc, edsCluster("up", nil), edsCluster("slow", nil),
			cla("up", lbEndpoint(up.addr(), 0)), cla("slow", lbEndpoint(slow.addr(), 0)))
		eventually(t, 10*time.Second, "config swapped", func() bool { return gw.g.model.Load() != before })
		close(hold)
		select {
		case got := <-done:
			if got.body != "slow2 done" {
				t.Fatalf("in-flight request across a config update got %q", got.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("in-flight request did not finish")
		}
	})

	t.Run("drain finishes in-flight requests and stops accepting", func(t *testing.T) {
		done := getAsync(gw.url + "/slow")
		eventually(t, 5*time.Second, "request in flight", func() bool { return gw.g.acquire() != nil && activeRefs(gw.g) > 1 })
		gw.cancel()
		eventually(t, 5*time.Second, "readyz draining", func() bool { return !gw.g.Ready() })
		close(release)
		select {
		case r := <-done:
			if r.code != 200 || r.body != "slow done" {
				t.Fatalf("in-flight request got %d %q, want it completed", r.code, r.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("in-flight request did not finish")
		}
		select {
		case <-gw.done:
		case <-time.After(10 * time.Second):
			t.Fatal("gateway did not stop")
		}
		gw.done <- nil // for the cleanup
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", gw.url+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("a drained gateway still accepts requests")
		}
	})
}

// activeRefs returns the current model's reference count minus the one
// the caller's acquire took.
func activeRefs(g *Gateway) int64 {
	m := g.model.Load()
	defer m.refs.Add(-1)
	return m.refs.Load()
}
