package httpget

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGetAndOK(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.Error(w, "gone", http.StatusGone)
			return
		}
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	ctx := t.Context()

	resp, err := OK(ctx, srv.Client(), srv.URL+"/ok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("body %q, want hello", b)
	}

	if _, err := OK(ctx, nil, srv.URL+"/missing"); err == nil || !strings.Contains(err.Error(), "/missing: 410 Gone") {
		t.Fatalf("OK of a 410: err = %v, want the URL and the status", err)
	}
	resp, err = Get(ctx, nil, srv.URL+"/missing")
	if err != nil || resp.StatusCode != http.StatusGone {
		t.Fatalf("Get of a 410: %v %v, want the response", resp, err)
	}
	resp.Body.Close()

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Get(cctx, nil, srv.URL+"/ok"); err == nil {
		t.Fatal("Get with an ended ctx succeeded")
	}
	if _, err := Get(ctx, nil, "http://[::1"); err == nil {
		t.Fatal("Get of a malformed URL succeeded")
	}
}

// TestText: the status and body of any answer; a failed request is 0 and
// the error.
func TestText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	if code, body := Text(t.Context(), srv.Client(), srv.URL); code != http.StatusForbidden || body != "denied\n" {
		t.Fatalf("Text of a 403: %d %q", code, body)
	}
	if code, body := Text(t.Context(), nil, "http://[::1"); code != 0 || !strings.Contains(body, "missing ']'") {
		t.Fatalf("Text of a malformed URL: %d %q, want 0 and the error", code, body)
	}
}
