//go:build wasip1

package guestcrypto

import (
	"errors"
	"hash"
	"unsafe"
)

func newSHA256() hash.Hash         { return newDigest() }
func sum256(b []byte) [Size]byte   { return pureSum256(b) }
func newHMAC(key []byte) hash.Hash { return newPureHMAC(key) }

// randomGet is WASI's random_get, which Envoy's hosts export.
//
//go:wasmimport wasi_snapshot_preview1 random_get
//go:noescape
func randomGet(buf unsafe.Pointer, n uint32) uint32

func read(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if errno := randomGet(unsafe.Pointer(&b[0]), uint32(len(b))); errno != 0 {
		return errors.New("wasi random_get failed: errno " + itoa(errno))
	}
	return nil
}

func itoa(n uint32) string {
	if n == 0 {
		return "0"
	}
	var b [10]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
