package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// filterStream serialises every call into one chain stream: the request
// body is read by the transport's goroutine while the response may already
// arrive, and a wasm instance must never be entered twice at once. Each
// callback is a method that takes the lock.
type filterStream struct {
	mu       sync.Mutex
	cs       *wasmhost.ChainStream
	buffered [2]int
	limit    int
	// props are the stream's extra properties (StreamInfo.Properties),
	// written only under mu.
	props map[string][]byte
	// local is a filter's local reply given from a body callback.
	local *wasmhost.LocalReply
	// bufs lends the bodies' read buffers (the gateway's pool).
	bufs *copyBuffers
}

func (f *filterStream) requestHeaders(h *wasmhost.Headers, endOfStream bool) wasmhost.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs.OnRequestHeaders(h, endOfStream)
}

func (f *filterStream) requestBody(chunk []byte, endOfStream bool) wasmhost.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs.OnRequestBody(chunk, endOfStream)
}

func (f *filterStream) responseHeaders(h *wasmhost.Headers, endOfStream bool) wasmhost.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs.OnResponseHeaders(h, endOfStream)
}

// ignoresResponseBody: every filter of the stream runs natively and said it
// ignores the response body and trailers, so the body need not go through
// the chain.
func (f *filterStream) ignoresResponseBody() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs.IgnoresResponseBody()
}

// deniedResponseHeaders records details as response.code_details, then runs
// the response header callbacks on a local denial's headers.
func (f *filterStream) deniedResponseHeaders(h *wasmhost.Headers, details []byte) wasmhost.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.props["response.code_details"] = details
	return f.cs.OnResponseHeaders(h, false)
}

func (f *filterStream) responseBody(chunk []byte, endOfStream bool) wasmhost.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs.OnResponseBody(chunk, endOfStream)
}

func (f *filterStream) responseTrailers(t *wasmhost.Headers) wasmhost.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs.OnResponseTrailers(t)
}

// close ends the stream in every filter (on_done, on_log, on_delete).
func (f *filterStream) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cs.Close()
}

// primeRequestBody reads the request body through the filters until they
// release it (or answer locally). It reports whether to go on forwarding;
// when it returns false the response has been written.
func (x *exchange) primeRequestBody(fb *filteredBody) bool {
	w, r := x.w, x.r
	var pre []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := fb.Read(buf)
		pre = append(pre, buf[:n]...)
		if err == nil && len(fb.out) == 0 && !fb.eof {
			// The filters released their buffer; the rest streams.
			break
		}
		if errors.Is(err, io.EOF) || (err == nil && fb.eof && len(fb.out) == 0) {
			// Whole body seen and released: its length is now known.
			r.ContentLength = int64(len(pre))
			r.Body = io.NopCloser(bytes.NewReader(pre))
			_ = fb.Close()
			return true
		}
		if err != nil {
			switch {
			case x.fs.local != nil:
				x.status = writeLocalReply(w, x.fs.local)
			case errors.Is(err, errBodyLimit):
				x.status = http.StatusRequestEntityTooLarge
				http.Error(w, err.Error(), x.status)
			default:
				x.status = http.StatusBadRequest
				http.Error(w, "gateway: reading the request body: "+err.Error(), x.status)
			}
			return false
		}
	}
	r.ContentLength = -1
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(pre), fb), fb}
	return true
}

// filteredBody passes a body through the filters chunk by chunk. Chunks a
// filter buffers are held (up to the limit) until it lets them go.
type filteredBody struct {
	rc      io.ReadCloser
	fs      *filterStream
	dir     int
	req     bool
	trailer *http.Response
	out     []byte
	eof     bool
	remain  int64  // bytes still expected when the length is known, else -1
	buf     []byte // read buffer, from fs.bufs
}

func (b *filteredBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.eof {
			return 0, io.EOF
		}
		if b.buf == nil {
			b.buf = b.fs.bufs.Get()
		}
		n, err := b.rc.Read(b.buf)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		eos := errors.Is(err, io.EOF)
		if b.remain >= 0 {
			// A known length ends the stream with its last byte: no extra
			// empty end-of-stream callback into every filter.
			b.remain -= int64(n)
			eos = eos || b.remain <= 0
		}
		chunk := b.buf[:n]
		if n == 0 && !eos {
			continue
		}
		var res wasmhost.Result
		if b.req {
			res = b.fs.requestBody(chunk, eos)
		} else {
			res = b.fs.responseBody(chunk, eos)
		}
		switch res.Action {
		case wasmhost.Continue:
			b.out = append(b.out[:0], res.Body...)
			b.fs.buffered[b.dir] = 0
		case wasmhost.Buffer:
			b.fs.buffered[b.dir] += n
			if b.fs.buffered[b.dir] > b.fs.limit {
				return 0, errBodyLimit
			}
		case wasmhost.Reply:
			b.fs.local = res.Reply
			return 0, errLocalReply
		default:
			return 0, fmt.Errorf("a filter stopped the %s body (%s)", map[bool]string{true: "request", false: "response"}[b.req], res.Action)
		}
		if eos {
			b.eof = true
			b.filterTrailers()
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *filteredBody) Close() error {
	if b.buf != nil && b.eof {
		b.fs.bufs.Put(b.buf)
		b.buf = nil
	}
	return b.rc.Close()
}

// filterTrailers runs the response trailers, if any, through the filters
// once the body has ended, and writes back what they leave.
func (b *filteredBody) filterTrailers() {
	if b.trailer == nil || len(b.trailer.Trailer) == 0 {
		return
	}
	t := headersFrom(b.trailer.Trailer)
	b.fs.responseTrailers(t)
	for k := range b.trailer.Trailer {
		delete(b.trailer.Trailer, k)
	}
	for _, kv := range t.Pairs {
		b.trailer.Trailer.Add(kv[0], kv[1])
	}
}

// requestToHeaders builds the proxy-wasm header map with Envoy's pseudo
// headers, and returns the :path it gave them.
func requestToHeaders(r *http.Request) (*wasmhost.Headers, string) {
	h := &wasmhost.Headers{Pairs: make([][2]string, 0, len(r.Header)+4)}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := r.URL.RequestURI()
	h.Pairs = append(h.Pairs, [2]string{":method", r.Method}, [2]string{":path", path},
		[2]string{":authority", r.Host}, [2]string{":scheme", scheme})
	h.AddHTTP(r.Header)
	return h, path
}

// applyRequestHeaders makes the filtered header map h the request's
// headers; path is the :path the filters were given (an unchanged one is
// not parsed again).
func applyRequestHeaders(r *http.Request, h *wasmhost.Headers, path string) {
	hdr := make(http.Header, len(h.Pairs))
	for _, kv := range h.Pairs {
		switch kv[0] {
		case ":method":
			r.Method = kv[1]
		case ":authority":
			r.Host = kv[1]
		case ":path":
			if kv[1] == path {
				continue
			}
			if u, err := url.ParseRequestURI(kv[1]); err == nil {
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
			}
		case ":scheme":
		default:
			hdr.Add(kv[0], kv[1])
		}
	}
	r.Header = hdr
}

func responseToHeaders(resp *http.Response) *wasmhost.Headers {
	h := &wasmhost.Headers{Pairs: make([][2]string, 0, len(resp.Header)+1)}
	h.Pairs = append(h.Pairs, [2]string{":status", strconv.Itoa(resp.StatusCode)})
	h.AddHTTP(resp.Header)
	return h
}

func applyResponseHeaders(resp *http.Response, h *wasmhost.Headers) {
	hdr := make(http.Header, len(h.Pairs))
	for _, kv := range h.Pairs {
		if kv[0] == ":status" {
			if n, err := strconv.Atoi(kv[1]); err == nil {
				resp.StatusCode = n
			}
			continue
		}
		hdr.Add(kv[0], kv[1])
	}
	resp.Header = hdr
}

func headersFrom(h http.Header) *wasmhost.Headers {
	out := &wasmhost.Headers{}
	out.AddHTTP(h)
	return out
}

// writeLocalReply answers from a filter's proxy_send_local_response.
func writeLocalReply(w http.ResponseWriter, lr *wasmhost.LocalReply) int {
	for _, kv := range lr.Headers {
		w.Header().Add(kv[0], kv[1])
	}
	status := lr.Status
	if lr.GRPCStatus >= 0 {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", strconv.Itoa(int(lr.GRPCStatus)))
		w.Header().Set("Grpc-Message", string(lr.Body))
		status = http.StatusOK
	}
	if status == 0 {
		status = http.StatusForbidden
	}
	w.WriteHeader(status)
	if lr.GRPCStatus < 0 {
		_, _ = w.Write(lr.Body)
	}
	return status
}
