package modulefetch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestFetch(t *testing.T) {
	mod := []byte("\x00asm fake module")
	var hits atomic.Int32
	var serve atomic.Value
	serve.Store(mod)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(serve.Load().([]byte))
	}))
	defer srv.Close()
	dir := t.TempDir()
	f := &Fetcher{Dir: dir}
	ctx := context.Background()

	t.Run("fetch and verify", func(t *testing.T) {
		b, err := f.Fetch(ctx, srv.URL+"/m", Sum(mod))
		if err != nil || string(b) != string(mod) {
			t.Fatalf("Fetch = %q, %v", b, err)
		}
	})
	t.Run("cached on disk: no second fetch", func(t *testing.T) {
		before := hits.Load()
		srv2 := &Fetcher{Dir: dir}
		if _, err := srv2.Fetch(ctx, "http://127.0.0.1:1/unreachable", Sum(mod)); err != nil {
			t.Fatalf("cached Fetch: %v", err)
		}
		if hits.Load() != before {
			t.Fatal("a cached module was fetched again")
		}
	})
	t.Run("sha256 mismatch refused and not cached", func(t *testing.T) {
		serve.Store([]byte("tampered"))
		want := Sum([]byte("expected"))
		_, err := f.Fetch(ctx, srv.URL+"/m", want)
		if !errors.Is(err, ErrSHA256Mismatch) {
			t.Fatalf("err = %v, want ErrSHA256Mismatch", err)
		}
		if _, err := (&Fetcher{Dir: dir}).Fetch(ctx, "http://127.0.0.1:1/x", want); err == nil {
			t.Fatal("a tampered module landed in the cache")
		}
	})
	t.Run("bad sha256 rejected", func(t *testing.T) {
		if _, err := f.Fetch(ctx, srv.URL, "abc"); err == nil {
			t.Fatal("short sha256 accepted")
		}
	})
	t.Run("server error", func(t *testing.T) {
		bad := httptest.NewServer(http.NotFoundHandler())
		defer bad.Close()
		if _, err := (&Fetcher{}).Fetch(ctx, bad.URL, Sum([]byte("x"))); err == nil {
			t.Fatal("404 accepted")
		}
	})
}
