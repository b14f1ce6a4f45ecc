package wasmhost

import (
	"context"
	"errors"
	"time"
)

// Action tells the gateway what to do after a stream callback.
type Action int

const (
	// Continue forwards the (possibly modified) headers, body or trailers.
	Continue Action = iota
	// Buffer holds what the callback was given — the headers (the guest
	// returned StopIteration with a body to come) or this body chunk — and
	// asks for the next callback. The gateway keeps calling the body (and
	// trailers) callbacks; the first Continue releases everything held: the
	// held headers, then Result.Body with all chunks buffered so far.
	Buffer
	// Reply answers the request with Result.Reply instead of forwarding it.
	Reply
	// Reset aborts the stream (proxy_close_stream).
	Reset
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Buffer:
		return "buffer"
	case Reply:
		return "reply"
	case Reset:
		return "reset"
	}
	return "unknown"
}

// Result is the outcome of a stream callback.
type Result struct {
	Action Action
	// Body is the body to forward on Continue after a body callback: the
	// chunks buffered so far plus this one, as the guest left them.
	Body []byte
	// Reply is set when Action is Reply.
	Reply *LocalReply
	// Err is the guest failure that decided this result under the plugin's
	// fail policy (a fail-open Continue or a fail-closed 503), else nil.
	Err error
}

// LocalReply is a response the guest (proxy_send_local_response) or the
// fail-closed policy produced.
type LocalReply struct {
	Status     int
	Headers    [][2]string
	Body       []byte
	Details    string
	GRPCStatus int32 // -1 when not a gRPC reply
}

// StreamInfo carries the properties of one request that are not in its
// headers. Guests read them with proxy_get_property.
type StreamInfo struct {
	// SourceAddress and DestinationAddress are "ip:port" (properties
	// source.address / source.port, destination.address / destination.port).
	SourceAddress, DestinationAddress string
	// PeerPrincipal is connection.subject_peer_certificate; PeerURISAN is
	// connection.uri_san_peer_certificate (a SPIFFE id under mTLS); LocalURISAN
	// is connection.uri_san_local_certificate.
	PeerPrincipal, PeerURISAN, LocalURISAN string
	// MTLS is connection.mtls; TLSVersion is connection.tls_version.
	MTLS       bool
	TLSVersion string
	// RouteName and ClusterName are route_name and cluster_name.
	RouteName, ClusterName string
	// Properties holds any other property by its dotted path, raw-encoded as
	// Envoy encodes it (strings as bytes, integers as 8-byte little endian).
	Properties map[string][]byte
}

// Stream is one HTTP stream through one plugin. It is bound to one instance
// of the plugin from NewStream until Close (its context lives there) and
// holds that instance only while a callback runs. Its methods must be
// called from one goroutine at a time, in stream order.
type Stream struct {
	p    *Plugin
	in   *instance
	id   uint32
	ctx  context.Context
	info StreamInfo

	reqHeaders, reqTrailers, respHeaders, respTrailers *Headers
	reqBody, respBody                                  []byte
	props                                              map[string][]byte
	startTime                                          time.Time

	localReply   *LocalReply
	closeStream  bool
	continued    [2]bool
	pendingCalls int
	limitErr     error
	failed       *Result
	closed       bool
	// ignoresRespBody: the stream's (native) context ignores the response
	// body and trailers (IgnoresResponseBody).
	ignoresRespBody bool
}

// NewStream starts a stream: it binds it to an instance (starting one if
// the pool is not full; waiting, bounded by ctx, only while every instance
// is still starting) and creates the HTTP context in it
// (proxy_on_context_create). A guest failure here — including an instance
// that fails to start — does not return an error: the stream's callbacks
// then answer per the fail policy. The error is for a cancelled ctx or a
// closed plugin. Always Close the stream.
func (p *Plugin) NewStream(ctx context.Context, info StreamInfo) (*Stream, error) {
	in, err := p.acquire(ctx)
	if err != nil {
		var start *startError
		if !errors.As(err, &start) {
			return nil, err
		}
		// No instance can start (a guest that traps or loops in start-up,
		// or no memory): answer per the fail policy, like any guest failure.
		s := &Stream{p: p, ctx: ctx, info: info, startTime: time.Now()}
		s.fail(start.err)
		return s, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.nextID++
	s := &Stream{p: p, in: in, id: in.nextID, ctx: ctx, info: info, startTime: time.Now()}
	in.streams[s.id] = s
	in.setContext(s.id, s)
	if _, err := in.call("proxy_on_context_create", in.f.onContextCreate, uint64(s.id), uint64(in.rootID)); err != nil {
		s.fail(err)
	} else if in.ignoresRespBody != nil {
		s.ignoresRespBody = in.ignoresRespBody(s.id)
	}
	return s, nil
}

// IgnoresResponseBody reports whether the stream's filter context said it
// ignores the response body and trailers: a native filter that is a
// proxywasm.ResponseBodyIgnorer. The caller may then skip OnResponseBody
// and OnResponseTrailers and pass the body on as it arrives. Always false
// for a wasm filter.
func (s *Stream) IgnoresResponseBody() bool { return s.ignoresRespBody }

// OnRequestHeaders runs proxy_on_request_headers. The guest edits h in place.
func (s *Stream) OnRequestHeaders(h *Headers, endOfStream bool) Result {
	s.reqHeaders = h
	return s.headers("proxy_on_request_headers", func(f *exports) apiFunc { return f.onRequestHeaders }, streamRequest, h, endOfStream)
}

// OnResponseHeaders runs proxy_on_response_headers. The guest edits h in place.
func (s *Stream) OnResponseHeaders(h *Headers, endOfStream bool) Result {
	s.respHeaders = h
	return s.headers("proxy_on_response_headers", func(f *exports) apiFunc { return f.onResponseHeaders }, streamResponse, h, endOfStream)
}

// OnRequestBody runs proxy_on_request_body with the chunks buffered so far
// plus chunk.
func (s *Stream) OnRequestBody(chunk []byte, endOfStream bool) Result {
	s.reqBody = append(s.reqBody, chunk...)
	return s.body("proxy_on_request_body", func(f *exports) apiFunc { return f.onRequestBody }, streamRequest, &s.reqBody, endOfStream)
}

// OnResponseBody runs proxy_on_response_body with the chunks buffered so far
// plus chunk.
func (s *Stream) OnResponseBody(chunk []byte, endOfStream bool) Result {
	s.respBody = append(s.respBody, chunk...)
	return s.body("proxy_on_response_body", func(f *exports) apiFunc { return f.onResponseBody }, streamResponse, &s.respBody, endOfStream)
}

// OnRequestTrailers runs proxy_on_request_trailers. The guest edits t in place.
func (s *Stream) OnRequestTrailers(t *Headers) Result {
	s.reqTrailers = t
	return s.headersNoEOS("proxy_on_request_trailers", func(f *exports) apiFunc { return f.onRequestTrailers }, streamRequest, t)
}

// OnResponseTrailers runs proxy_on_response_trailers. The guest edits t in place.
func (s *Stream) OnResponseTrailers(t *Headers) Result {
	s.respTrailers = t
	return s.headersNoEOS("proxy_on_response_trailers", func(f *exports) apiFunc { return f.onResponseTrailers }, streamResponse, t)
}

func (s *Stream) headers(name string, export func(*exports) apiFunc, dir streamType, h *Headers, eos bool) Result {
	if in := s.in; in != nil {
		in.mu.Lock() // for this callback: other streams of the instance wait
		defer in.mu.Unlock()
	}
	if r, done := s.begin(dir); done {
		return r
	}
	action, err := s.in.call(name, export(&s.in.f), uint64(s.id), uint64(h.Len()), b2u(eos))
	if err == nil && uint32(action) != actionContinue && !eos && s.localReply == nil && !s.closeStream &&
		s.limitErr == nil && s.pendingCalls == 0 {
		// StopIteration with a body to come and nothing in flight: the guest
		// wants to see the body before the headers go out (Envoy keeps
		// calling the body callbacks).
		return Result{Action: Buffer}
	}
	return s.finish(action, err, dir)
}

func (s *Stream) headersNoEOS(name string, export func(*exports) apiFunc, dir streamType, h *Headers) Result {
	if in := s.in; in != nil {
		in.mu.Lock() // for this callback: other streams of the instance wait
		defer in.mu.Unlock()
	}
	if r, done := s.begin(dir); done {
		return r
	}
	action, err := s.in.call(name, export(&s.in.f), uint64(s.id), uint64(h.Len()))
	return s.finish(action, err, dir)
}

func (s *Stream) body(name string, export func(*exports) apiFunc, dir streamType, buf *[]byte, eos bool) Result {
	if in := s.in; in != nil {
		in.mu.Lock() // for this callback: other streams of the instance wait
		defer in.mu.Unlock()
	}
	if r, done := s.begin(dir); done {
		if r.Action == Continue {
			r.Body = *buf
			*buf = nil
		}
		return r
	}
	action, err := s.in.call(name, export(&s.in.f), uint64(s.id), uint64(len(*buf)), b2u(eos))
	r := s.finishBody(action, err, dir, eos)
	if r.Action == Continue {
		r.Body = *buf
		*buf = nil
	}
	return r
}

func (s *Stream) finishBody(action uint64, err error, dir streamType, eos bool) Result {
	if err == nil && uint32(action) != actionContinue && !eos && s.localReply == nil && !s.closeStream && s.pendingCalls == 0 {
		return Result{Action: Buffer} // StopIterationAndBuffer: wait for more
	}
	return s.finish(action, err, dir)
}

// begin prepares a callback; done is true when the stream already failed.
func (s *Stream) begin(dir streamType) (Result, bool) {
	if s.closed {
		return Result{Action: Reset, Err: errors.New("stream is closed")}, true
	}
	if s.failed != nil {
		return *s.failed, true
	}
	if s.localReply != nil {
		return Result{Action: Reply, Reply: s.localReply}, true
	}
	if _, err := s.in.drainEvents(); err != nil {
		return s.fail(err), true
	}
	// A long stream holds its instance; its root context's ticks are
	// delivered between the stream's callbacks.
	if s.in.tickPeriod.Load() > 0 && s.in.tickDue(int64(time.Since(s.p.epoch))) {
		if err := s.in.tick(); err != nil {
			return s.fail(err), true
		}
	}
	s.continued[dir] = false
	s.limitErr = nil
	s.in.setContext(s.id, s)
	return Result{}, false
}

// finish turns a callback's return into a Result, waiting while the guest
// pauses the stream.
func (s *Stream) finish(action uint64, err error, dir streamType) Result {
	if err != nil {
		return s.fail(err)
	}
	if s.limitErr != nil {
		return s.fail(s.limitErr)
	}
	if uint32(action) != actionContinue && s.localReply == nil && !s.closeStream {
		if err := s.wait(dir); err != nil {
			return s.fail(err)
		}
	}
	switch {
	case s.limitErr != nil:
		return s.fail(s.limitErr)
	case s.localReply != nil:
		return Result{Action: Reply, Reply: s.localReply}
	case s.closeStream:
		return Result{Action: Reset}
	}
	return Result{Action: Continue}
}

// wait serves the paused stream's instance until the guest resumes the
// stream (proxy_continue_stream), replies locally, or PauseTimeout passes.
// HTTP call responses, queue notifications and ticks are delivered to the
// same instance meanwhile, by this stream or by whoever holds the instance.
// It runs with in.mu held and releases it while it sleeps.
func (s *Stream) wait(dir streamType) error {
	in := s.in
	deadline := time.NewTimer(s.p.cfg.PauseTimeout)
	defer deadline.Stop()
	var tick *time.Timer
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		if s.continued[dir] || s.localReply != nil || s.closeStream {
			return nil
		}
		if in.dead.Load() {
			return &guestError{Plugin: s.p.cfg.Name, Callback: "paused stream", Kind: "trap", Err: errDead}
		}
		delivered, err := in.drainEvents()
		if err != nil {
			return err
		}
		now := int64(time.Since(s.p.epoch))
		if in.tickDue(now) {
			if err := in.tick(); err != nil {
				return err
			}
			delivered = true
		}
		if delivered {
			continue
		}
		posted := in.postedChan()
		if in.hasEvents() {
			continue // posted before posted was read: deliver it now
		}
		var tickC <-chan time.Time
		if in.tickPeriod.Load() > 0 {
			d := time.Duration(in.nextTick.Load() - now)
			if tick == nil {
				tick = time.NewTimer(d)
			} else {
				tick.Reset(d)
			}
			tickC = tick.C
		}
		// Other streams of the instance run while this one waits.
		in.mu.Unlock()
		select {
		case <-posted:
		case <-tickC:
		case <-deadline.C:
			in.mu.Lock()
			return &guestError{Plugin: s.p.cfg.Name, Callback: "paused stream", Kind: "pause-timeout",
				Err: errors.New("the guest paused the stream and did not resume it within PauseTimeout")}
		case <-s.ctx.Done():
			in.mu.Lock()
			return s.ctx.Err()
		}
		in.mu.Lock()
	}
}

// fail applies the plugin's fail policy and remembers the result for the
// rest of the stream.
func (s *Stream) fail(err error) Result {
	s.p.stats.failures.Add(1)
	var r Result
	if s.p.cfg.FailOpen {
		r = Result{Action: Continue, Err: err}
	} else {
		r = Result{Action: Reply, Err: err, Reply: &LocalReply{
			Status:     503,
			Headers:    [][2]string{{"content-type", "text/plain"}},
			Body:       []byte("wasm plugin " + s.p.cfg.Name + " failed\n"),
			Details:    "wasm_fail_stream",
			GRPCStatus: -1,
		}}
	}
	s.failed = &r
	return r
}

// Err returns the guest failure that decided this stream, if any.
func (s *Stream) Err() error {
	if s.failed == nil {
		return nil
	}
	return s.failed.Err
}

// Close ends the stream: proxy_on_done, proxy_on_log and proxy_on_delete,
// then returns the instance to the pool (or discards it if it failed).
func (s *Stream) Close() {
	if s.closed {
		return
	}
	s.closed = true
	in := s.in
	if in == nil {
		return // the plugin could not start an instance for this stream
	}
	in.mu.Lock()
	if !in.dead.Load() {
		in.setContext(s.id, s)
		if _, err := in.call("proxy_on_done", in.f.onDone, uint64(s.id)); err == nil {
			if _, err := in.call("proxy_on_log", in.f.onLog, uint64(s.id)); err == nil {
				_, _ = in.call("proxy_on_delete", in.f.onDelete, uint64(s.id))
			}
		}
	}
	for tok, pc := range in.calls {
		if pc.ctxID == s.id {
			pc.cancel()
			delete(in.calls, tok)
		}
	}
	delete(in.streams, s.id)
	in.setContext(in.rootID, nil)
	in.mu.Unlock()
	s.p.release(in)
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
