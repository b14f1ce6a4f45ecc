package wasmhost

import (
	"testing"
)

func TestHeadersEditing(t *testing.T) {
	tests := []struct {
		name string
		edit func(h *Headers)
		want [][2]string
	}{
		{"add keeps duplicates", func(h *Headers) { h.Add("A", "3") }, [][2]string{{"a", "1"}, {"b", "2"}, {"a", "x"}, {"a", "3"}}},
		{"set replaces all at the first position", func(h *Headers) { h.Set("a", "9") }, [][2]string{{"a", "9"}, {"b", "2"}}},
		{"set adds a missing key", func(h *Headers) { h.Set("c", "3") }, [][2]string{{"a", "1"}, {"b", "2"}, {"a", "x"}, {"c", "3"}}},
		{"del removes every value", func(h *Headers) { h.Del("A") }, [][2]string{{"b", "2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHeaders("a", "1", "B", "2", "a", "x")
			tc.edit(h)
			if len(h.Pairs) != len(tc.want) {
				t.Fatalf("got %v, want %v", h.Pairs, tc.want)
			}
			for i := range tc.want {
				if h.Pairs[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", h.Pairs, tc.want)
				}
			}
		})
	}
	h := NewHeaders("a", "1", "a", "2")
	if v := h.Values("A"); len(v) != 2 || v[1] != "2" {
		t.Fatalf("values %v", v)
	}
	if c := h.Clone(); &c.Pairs[0] == &h.Pairs[0] {
		t.Fatal("clone shares storage")
	}
}

func TestPairsRoundTrip(t *testing.T) {
	for _, pairs := range [][][2]string{nil, {{"", ""}}, {{":path", "/"}, {"k", "v\x00w"}, {"x", ""}}} {
		b := make([]byte, pairsSize(pairs))
		encodePairs(b, pairs)
		got, ok := decodePairs(b, 10)
		if !ok || len(got) != len(pairs) {
			t.Fatalf("round trip of %q: %q %v", pairs, got, ok)
		}
		for i := range pairs {
			if got[i] != pairs[i] {
				t.Fatalf("round trip of %q: %q", pairs, got)
			}
		}
	}
	b := make([]byte, pairsSize([][2]string{{"a", "b"}, {"c", "d"}}))
	encodePairs(b, [][2]string{{"a", "b"}, {"c", "d"}})
	if _, ok := decodePairs(b, 1); ok {
		t.Fatal("more pairs than the limit accepted")
	}
	if _, ok := decodePairs(b[:len(b)-1], 10); ok {
		t.Fatal("truncated map accepted")
	}
}

// FuzzDecodePairs feeds arbitrary guest bytes to the header map parser: it
// must never panic (a panic in a hostcall would be a host bug a guest can
// trigger).
func FuzzDecodePairs(f *testing.F) {
	b := make([]byte, pairsSize([][2]string{{"a", "b"}}))
	encodePairs(b, [][2]string{{"a", "b"}})
	f.Add(b)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		pairs, ok := decodePairs(data, 1024)
		if !ok {
			return
		}
		out := make([]byte, pairsSize(pairs))
		encodePairs(out, pairs)
		again, ok := decodePairs(out, 1024)
		if !ok || len(again) != len(pairs) {
			t.Fatalf("re-encoding %q failed", pairs)
		}
	})
}
