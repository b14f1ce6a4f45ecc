package guesturl_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/meshwarden/meshwarden/internal/guesturl"
)

// FuzzAgainstNetURL is the differential test: results and error messages
// equal net/url's.
func FuzzAgainstNetURL(f *testing.F) {
	for _, s := range []string{"", "a+b%20c", "%zz", "%4", "%", "100%", "é&=?/ ~x", "%e9%E9", "a%2", "%\xff1", `%"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := guesturl.QueryEscape(s), url.QueryEscape(s); got != want {
			t.Errorf("QueryEscape(%q) = %q, want %q", s, got, want)
		}
		got, gerr := guesturl.QueryUnescape(s)
		want, werr := url.QueryUnescape(s)
		if got != want || (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
			t.Errorf("QueryUnescape(%q) = %q, %v; net/url: %q, %v", s, got, gerr, want, werr)
		}
		if gerr != nil && !errors.Is(gerr, guesturl.ErrEscape) {
			t.Errorf("QueryUnescape(%q) error %v is not ErrEscape", s, gerr)
		}
	})
}
