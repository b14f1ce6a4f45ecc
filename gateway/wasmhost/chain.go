package wasmhost

import (
	"context"
	"fmt"
)

// Chain runs several plugins on one stream, requests in order and responses
// in reverse order, as Envoy's HTTP filter chain does.
type Chain struct {
	plugins []*Plugin
}

// NewChain returns a chain of plugins in request order.
func NewChain(plugins ...*Plugin) *Chain { return &Chain{plugins: plugins} }

// OrderedChain builds a chain from plugins named by order (normally
// filters.Order()). A name without a plugin is an error, so a missing filter
// cannot be skipped silently.
func OrderedChain(byName map[string]*Plugin, order []string) (*Chain, error) {
	c := &Chain{}
	for _, name := range order {
		p := byName[name]
		if p == nil {
			return nil, fmt.Errorf("wasm chain: no plugin for filter %q named in the filter order: configure it or remove it from filters/order.txt", name)
		}
		c.plugins = append(c.plugins, p)
	}
	return c, nil
}

// ChainStream is one HTTP stream through every plugin of a chain.
type ChainStream struct {
	streams []*Stream
	// held[dir] records headers a plugin buffered: the plugins after it (in
	// traversal order, from index from) have not seen them yet.
	held [2]heldHeaders
}

type heldHeaders struct {
	active bool
	from   int
	h      *Headers
}

// NewStream starts a stream in every plugin. On error the streams already
// started are closed.
func (c *Chain) NewStream(ctx context.Context, info StreamInfo) (*ChainStream, error) {
	cs := &ChainStream{streams: make([]*Stream, 0, len(c.plugins))}
	for _, p := range c.plugins {
		s, err := p.NewStream(ctx, info)
		if err != nil {
			cs.Close()
			return nil, err
		}
		cs.streams = append(cs.streams, s)
	}
	return cs, nil
}

// OnRequestHeaders runs every plugin's request headers callback in order,
// stopping at the first that does not continue.
func (cs *ChainStream) OnRequestHeaders(h *Headers, endOfStream bool) Result {
	return cs.headers(false, h, func(s *Stream) Result { return s.OnRequestHeaders(h, endOfStream) })
}

// OnResponseHeaders runs the response headers callbacks in reverse order.
func (cs *ChainStream) OnResponseHeaders(h *Headers, endOfStream bool) Result {
	return cs.headers(true, h, func(s *Stream) Result { return s.OnResponseHeaders(h, endOfStream) })
}

// IgnoresResponseBody reports whether every plugin's stream ignores the
// response body and trailers (Stream.IgnoresResponseBody) and none holds
// the response headers back for the body: the caller may then pass the
// response body on untouched instead of through OnResponseBody.
func (cs *ChainStream) IgnoresResponseBody() bool {
	if len(cs.streams) == 0 || cs.held[1].active {
		return false
	}
	for _, s := range cs.streams {
		if !s.IgnoresResponseBody() {
			return false
		}
	}
	return true
}

// OnRequestTrailers runs the request trailers callbacks in order.
func (cs *ChainStream) OnRequestTrailers(t *Headers) Result {
	return cs.each(false, 0, func(_ int, s *Stream) Result { return s.OnRequestTrailers(t) })
}

// OnResponseTrailers runs the response trailers callbacks in reverse order.
func (cs *ChainStream) OnResponseTrailers(t *Headers) Result {
	return cs.each(true, 0, func(_ int, s *Stream) Result { return s.OnResponseTrailers(t) })
}

// OnRequestBody passes chunk through the plugins in order; each one's
// forwarded body is the next one's chunk. A Buffer from any plugin stops the
// chunk there. Plugins after one that buffered the headers get the headers
// first.
func (cs *ChainStream) OnRequestBody(chunk []byte, endOfStream bool) Result {
	return cs.body(false, chunk, func(s *Stream, b []byte) Result { return s.OnRequestBody(b, endOfStream) })
}

// OnResponseBody passes chunk through the plugins in reverse order.
func (cs *ChainStream) OnResponseBody(chunk []byte, endOfStream bool) Result {
	return cs.body(true, chunk, func(s *Stream, b []byte) Result { return s.OnResponseBody(b, endOfStream) })
}

func dirIndex(reverse bool) int {
	if reverse {
		return 1
	}
	return 0
}

// order calls f for the streams from position start on, in traversal order,
// until f returns false.
func (cs *ChainStream) order(reverse bool, start int, f func(pos int, s *Stream) bool) {
	n := len(cs.streams)
	for i := start; i < n; i++ {
		s := cs.streams[i]
		if reverse {
			s = cs.streams[n-1-i]
		}
		if !f(i, s) {
			return
		}
	}
}

func (cs *ChainStream) headers(reverse bool, h *Headers, call func(*Stream) Result) Result {
	stopped := -1
	res := cs.each(reverse, 0, func(pos int, s *Stream) Result {
		r := call(s)
		if r.Action == Buffer {
			stopped = pos
		}
		return r
	})
	if res.Action == Buffer {
		cs.held[dirIndex(reverse)] = heldHeaders{active: true, from: stopped + 1, h: h}
	}
	return res
}

// flushHeld delivers held headers to the stream at pos if it has not seen
// them; it returns a non-Continue result if that stream stops.
func (cs *ChainStream) flushHeld(reverse bool, pos int, s *Stream) (Result, bool) {
	hh := &cs.held[dirIndex(reverse)]
	if !hh.active || pos < hh.from {
		return Result{}, false
	}
	var r Result
	if reverse {
		r = s.OnResponseHeaders(hh.h, false)
	} else {
		r = s.OnRequestHeaders(hh.h, false)
	}
	hh.from = pos + 1
	if hh.from >= len(cs.streams) {
		hh.active = false
	}
	if r.Action == Reply || r.Action == Reset {
		return r, true
	}
	return Result{}, false // Continue, or Buffer: it now holds the headers and gets the body
}

func (cs *ChainStream) each(reverse bool, start int, call func(int, *Stream) Result) Result {
	res := Result{Action: Continue}
	cs.order(reverse, start, func(pos int, s *Stream) bool {
		if fr, stop := cs.flushHeld(reverse, pos, s); stop {
			res = fr
			return false
		}
		var stop bool
		res, stop = res.merge(call(pos, s))
		return !stop
	})
	return res
}

// merge folds one plugin's result r into the chain's res: the first error
// sticks; a result other than Continue stops the chain and becomes its
// result, keeping that first error.
func (res Result) merge(r Result) (Result, bool) {
	if r.Err != nil && res.Err == nil {
		res.Err = r.Err
	}
	if r.Action != Continue {
		err := res.Err
		res = r
		if res.Err == nil {
			res.Err = err
		}
		return res, true
	}
	return res, false
}

func (cs *ChainStream) body(reverse bool, chunk []byte, call func(*Stream, []byte) Result) Result {
	res := Result{Action: Continue, Body: chunk}
	cs.order(reverse, 0, func(pos int, s *Stream) bool {
		if fr, stop := cs.flushHeld(reverse, pos, s); stop {
			res = fr
			return false
		}
		r := call(s, res.Body)
		var stop bool
		if res, stop = res.merge(r); stop {
			return false
		}
		res.Body = r.Body
		return true
	})
	return res
}

// Close closes every plugin's stream, last plugin first.
func (cs *ChainStream) Close() {
	for i := len(cs.streams) - 1; i >= 0; i-- {
		cs.streams[i].Close()
	}
}
