package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// RoundTrip makes the exchange its reverse proxy's transport: endpoint
// choice, retries within the cluster's budget, per-try timeouts, outlier
// detection and the client span.
func (x *exchange) RoundTrip(req *http.Request) (*http.Response, error) {
	g, c := x.g, x.cluster
	c.live.active.Add(1)
	defer c.live.active.Add(-1)
	var tried []*epState
	attempts := 1
	if rp := x.route.retry; rp != nil && (req.Body == nil || req.Body == http.NoBody) {
		attempts += rp.num
	}
	tr := c.tr.forRequest(req)
	held := int64(0) // retry budget slots this request holds
	defer func() { c.live.activeRetries.Add(-held) }()
	for i := 0; ; i++ {
		now := time.Now()
		ep := c.pick(now.UnixNano(), tried)
		if ep == nil {
			return nil, errNoHealthy
		}
		tried = append(tried, ep)
		resp, err := x.attempt(req, tr, ep)
		if errors.Is(err, errOverflow) {
			return nil, err // a local refusal: not the endpoint's fault, not retried
		}
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if c.observe(ep, status, err, now) {
			g.met.ejections.WithLabelValues(c.spec.name).Inc()
		}
		last := i+1 >= attempts || req.Context().Err() != nil
		if !last && x.route.retry.shouldRetry(status, err) && c.retryAllowed() {
			g.met.retries.WithLabelValues(c.spec.name).Inc()
			if resp != nil {
				_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
				resp.Body.Close()
			}
			held++
			continue
		}
		return resp, err
	}
}

// attempt sends one try to endpoint ep, bounded by the route's per-try
// timeout.
func (x *exchange) attempt(req *http.Request, tr *http.Transport, ep *epState) (*http.Response, error) {
	g, c := x.g, x.cluster
	ctx := req.Context()
	span := trace.SpanFromContext(ctx)
	if g.tracing {
		ctx, span = g.tracer.Start(ctx, "egress "+c.spec.name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("server.address", ep.addr)))
	}
	// A per-try timeout cancels the try's own context; without one the
	// try runs under the request's (route timeout, client gone), and a
	// context and its cancel propagation per try would be pure cost.
	cancel := context.CancelFunc(func() {})
	var timer *time.Timer
	if rp := x.route.retry; rp != nil && rp.perTry > 0 {
		ctx, cancel = context.WithCancel(ctx)
		timer = time.AfterFunc(rp.perTry, cancel)
	}
	// A shallow copy: req is already the reverse proxy's private outbound
	// request, and its body is only replayed when empty.
	out := req.WithContext(ctx)
	u := *req.URL
	u.Host = ep.addr
	out.URL = &u
	if g.tracing {
		g.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	}
	releaseConn, err := c.acquireConn(ctx)
	if err != nil {
		if timer != nil {
			timer.Stop()
		}
		cancel()
		if g.tracing {
			span.End()
		}
		return nil, err
	}
	ep.active.Add(1)
	resp, err := tr.RoundTrip(out)
	if timer != nil {
		timer.Stop()
	}
	done := func() {
		releaseConn()
		ep.active.Add(-1)
		cancel()
		if g.tracing {
			span.End()
		}
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		done()
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The upgraded connection outlives the exchange; the span ends here.
		releaseConn()
		ep.active.Add(-1)
		if g.tracing {
			span.End()
		}
		return resp, nil
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
	return resp, nil
}

type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (d *doneBody) Close() error {
	err := d.ReadCloser.Close()
	d.once.Do(d.done)
	return err
}
