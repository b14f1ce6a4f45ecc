package probe

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// recorder is a testing.TB that records a failure instead of stopping the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func failure(f func(tb testing.TB)) (msg string) {
	r := &recorder{}
	defer func() {
		if p := recover(); p != nil && p != any(r) {
			panic(p)
		}
		msg = r.failed
	}()
	f(r)
	return ""
}

func TestGetAndGetJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, `{"n":7}`)
		case "/bad":
			fmt.Fprint(w, `not json`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	if code, body := Get(t, srv.URL+"/missing"); code != 404 || len(body) == 0 {
		t.Fatalf("Get /missing: %d %q", code, body)
	}
	var v struct{ N int }
	if code := GetJSON(t, srv.URL+"/ok", &v); code != 200 || v.N != 7 {
		t.Fatalf("GetJSON /ok: %d %+v", code, v)
	}
	if msg := failure(func(tb testing.TB) { GetJSON(tb, srv.URL+"/bad", &v) }); msg == "" {
		t.Fatal("GetJSON accepted a body that is not JSON")
	}
}

func TestUntil(t *testing.T) {
	n := 0
	Until(t, "three calls", time.Second, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("ok called %d times, want 3", n)
	}
	msg := failure(func(tb testing.TB) { Until(tb, "never", 50*time.Millisecond, func() bool { return false }) })
	if msg != "timed out after 50ms waiting for never" {
		t.Fatalf("Until's failure: %q", msg)
	}
}
