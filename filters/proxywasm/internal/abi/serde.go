package abi

import (
	"encoding/binary"
	"errors"
	"slices"
	"unsafe"

	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// SerializeMap encodes pairs the way ABI 0.2.1 passes header maps: a
// little-endian u32 count, then a (key size, value size) u32 pair per entry,
// then every key and value in order, each followed by a NUL byte. An empty map
// encodes to nil.
func SerializeMap(pairs [][2]string) []byte {
	if len(pairs) == 0 {
		return nil
	}
	size := 4
	for _, p := range pairs {
		size += 8 + len(p[0]) + len(p[1]) + 2
	}
	b := make([]byte, 4+8*len(pairs), size)
	binary.LittleEndian.PutUint32(b, uint32(len(pairs)))
	for i, p := range pairs {
		binary.LittleEndian.PutUint32(b[4+8*i:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(b[8+8*i:], uint32(len(p[1])))
	}
	for _, p := range pairs {
		b = append(b, p[0]...)
		b = append(b, 0)
		b = append(b, p[1]...)
		b = append(b, 0)
	}
	return b
}

// errMalformedMap is wrapped by DeserializeMap's errors.
var errMalformedMap = errors.New("malformed serialized header map")

// DeserializeMap decodes a map encoded by SerializeMap (or by the host). An
// empty input is an empty map. A truncated or inconsistent input is an error,
// never a panic: the bytes come from the host.
func DeserializeMap(b []byte) ([][2]string, error) {
	return deserializeMap(b, false)
}

// DeserializeMapOwned is DeserializeMap for a buffer the caller owns and
// never writes again (what Host returns: "returned byte slices belong to the
// caller"): the keys and values point into b instead of a copy of it, which
// saves one allocation and copy of the whole map per read.
func DeserializeMapOwned(b []byte) ([][2]string, error) {
	return deserializeMap(b, true)
}

// AppendMapOwned is DeserializeMapOwned appending the pairs to dst, so a
// caller that reads a map per request reuses one slice for them. On error
// dst is returned unchanged.
func AppendMapOwned(dst [][2]string, b []byte) ([][2]string, error) {
	return appendMap(dst, b, true)
}

func deserializeMap(b []byte, owned bool) ([][2]string, error) {
	return appendMap(nil, b, owned)
}

func appendMap(dst [][2]string, b []byte, owned bool) ([][2]string, error) {
	if len(b) == 0 {
		return dst, nil
	}
	if len(b) < 4 {
		return dst, guestfmt.Errorf("%w: %d bytes, want at least 4", errMalformedMap, len(b))
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n == 0 {
		return dst, nil
	}
	if n > (len(b)-4)/8 {
		return dst, guestfmt.Errorf("%w: %d entries do not fit in %d bytes", errMalformedMap, n, len(b))
	}
	start := len(dst)
	out := slices.Grow(dst, n)[:start+n]
	data := b[4+8*n:]
	// One string for all keys and values: a single allocation, or none when
	// the buffer is ours.
	var all string
	if owned {
		all = unsafe.String(unsafe.SliceData(data), len(data))
	} else {
		all = string(data)
	}
	off := 0
	// The sizes are read in place (n*8 bytes after the count lie in b,
	// checked above), without a bounds check and a sub-slice per entry:
	// in the wasm guest those cost more than the loads.
	sizes := unsafe.Pointer(unsafe.SliceData(b[4 : 4+8*n]))
	for i := range n {
		kl := int(leUint32(unsafe.Add(sizes, 8*i)))
		vl := int(leUint32(unsafe.Add(sizes, 8*i+4)))
		if kl < 0 || vl < 0 || kl > len(all)-off || vl > len(all)-off-kl || len(all)-off-kl-vl < 2 {
			clear(out[start:])
			return dst, guestfmt.Errorf("%w: entry %d (key %d bytes, value %d bytes) overruns the data", errMalformedMap, i, kl, vl)
		}
		out[start+i][0] = all[off : off+kl]
		off += kl + 1
		out[start+i][1] = all[off : off+vl]
		off += vl + 1
	}
	return out, nil
}

// leUint32 reads the little-endian uint32 at p, byte by byte (p need not
// be aligned; the compiler merges the loads into one on little-endian
// targets such as wasm).
func leUint32(p unsafe.Pointer) uint32 {
	b := (*[4]byte)(p)
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// SerializePropertyPath joins path segments with NUL bytes, the encoding of
// proxy_get_property / proxy_set_property paths.
func SerializePropertyPath(path []string) []byte {
	if len(path) == 0 {
		return nil
	}
	size := len(path) - 1
	for _, s := range path {
		size += len(s)
	}
	return AppendPropertyPath(make([]byte, 0, size), path)
}

// AppendPropertyPath appends the serialized path (SerializePropertyPath) to b.
func AppendPropertyPath(b []byte, path []string) []byte {
	for i, s := range path {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, s...)
	}
	return b
}
