package abi

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestSerializeMapSpecLayout(t *testing.T) {
	// Layout per ABI 0.2.1: u32 count, (u32 key size, u32 value size) per
	// pair, then "key\0value\0" per pair; little endian.
	got := SerializeMap([][2]string{{"a", "bc"}, {":path", ""}})
	want := []byte{
		2, 0, 0, 0,
		1, 0, 0, 0, 2, 0, 0, 0,
		5, 0, 0, 0, 0, 0, 0, 0,
		'a', 0, 'b', 'c', 0,
		':', 'p', 'a', 't', 'h', 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SerializeMap = %v\nwant            %v", got, want)
	}
	if SerializeMap(nil) != nil {
		t.Error("an empty map must serialize to nil")
	}
}

func TestMapRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs [][2]string
	}{
		{"empty", nil},
		{"one", [][2]string{{"k", "v"}}},
		{"empty key and value", [][2]string{{"", ""}, {"x", ""}}},
		{"binary", [][2]string{{"k\x00k", "v\xff\x00"}}},
		{"duplicates", [][2]string{{"a", "1"}, {"a", "2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DeserializeMap(SerializeMap(tt.pairs))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.pairs) {
				t.Errorf("round trip = %q, want %q", got, tt.pairs)
			}
		})
	}
}

func TestDeserializeMapMalformed(t *testing.T) {
	valid := SerializeMap([][2]string{{"key", "value"}})
	tests := []struct {
		name string
		in   []byte
	}{
		{"short header", []byte{1, 0}},
		{"count too large", []byte{255, 255, 255, 255, 0, 0, 0, 0}},
		{"truncated data", valid[:len(valid)-1]},
		{"sizes overrun", append(append([]byte{}, valid[:4]...), 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 'k', 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DeserializeMap(tt.in)
			if !errors.Is(err, errMalformedMap) {
				t.Errorf("DeserializeMap(%v) error = %v, want a malformed-map error", tt.in, err)
			}
		})
	}
}

func TestSerializePropertyPath(t *testing.T) {
	tests := []struct {
		path []string
		want string
	}{
		{nil, ""},
		{[]string{"plugin_name"}, "plugin_name"},
		{[]string{"source", "address"}, "source\x00address"},
	}
	for _, tt := range tests {
		if got := string(SerializePropertyPath(tt.path)); got != tt.want {
			t.Errorf("SerializePropertyPath(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestStatusErr(t *testing.T) {
	if StatusOK.Err() != nil {
		t.Error("StatusOK.Err() != nil")
	}
	seen := map[error]Status{}
	for _, s := range []Status{StatusNotFound, StatusBadArgument, StatusSerializationFailed, StatusParseFailure,
		StatusInvalidMemoryAccess, StatusEmpty, StatusCasMismatch, StatusInternalFailure, StatusUnimplemented} {
		err := s.Err()
		if err == nil {
			t.Fatalf("status %d: nil error", s)
		}
		if prev, dup := seen[err]; dup {
			t.Errorf("statuses %d and %d map to the same error", prev, s)
		}
		seen[err] = s
	}
	if Status(99).Err() == nil {
		t.Error("an unknown status must be an error")
	}
}

func FuzzDeserializeMap(f *testing.F) {
	f.Add(SerializeMap([][2]string{{"a", "b"}, {"c", ""}}))
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := DeserializeMap(b) // must never panic
		owned, oerr := DeserializeMapOwned(bytes.Clone(b))
		if (err == nil) != (oerr == nil) || !slices.Equal(owned, pairs) {
			t.Fatalf("owned parse differs: %q (%v) vs %q (%v)", owned, oerr, pairs, err)
		}
		if err != nil {
			return
		}
		again, err := DeserializeMap(SerializeMap(pairs))
		if err != nil || !slices.Equal(again, pairs) {
			t.Fatalf("re-serialized map differs: %q vs %q (%v)", again, pairs, err)
		}
	})
}

// benchHeaders is a typical request header map (10 pairs, ≈ 400 bytes).
var benchHeaders = [][2]string{
	{":method", "GET"}, {":path", "/api/v1/accounts/42?expand=owner"}, {":authority", "accounts.mesh.local"},
	{":scheme", "https"}, {"user-agent", "meshwarden-bench/1.0"}, {"accept", "application/json"},
	{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	{"baggage", "mw-dye=canary"}, {"x-mw-dye", "canary"}, {"x-request-id", "6f1c0e9e-1d2b-4c1e-9d7a-2f1e0b9c8a7d"},
}

func BenchmarkSerializeMap(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = SerializeMap(benchHeaders)
	}
}

func BenchmarkDeserializeMap(b *testing.B) {
	in := SerializeMap(benchHeaders)
	for _, owned := range []bool{false, true} {
		b.Run(map[bool]string{false: "copy", true: "owned"}[owned], func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := deserializeMap(in, owned); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDeserializeMapOwnedSharesTheBuffer: the owned parse points into its
// input (no copy), the other one does not.
func TestDeserializeMapOwnedSharesTheBuffer(t *testing.T) {
	for _, owned := range []bool{false, true} {
		in := SerializeMap([][2]string{{"k", "v"}})
		m, err := deserializeMap(in, owned)
		if err != nil {
			t.Fatal(err)
		}
		in[len(in)-2] = 'w' // the value's byte
		if shared := m[0][1] == "w"; shared != owned {
			t.Fatalf("owned=%v: value %q after writing the input", owned, m[0][1])
		}
	}
}
