// Package guestcrypto is the cryptography the proxy-wasm guests need —
// SHA-256 (FIPS 180-4), HMAC-SHA-256 (RFC 2104) and random bytes — without
// linking os.
//
// Every crypto/* package of the standard library reaches
// crypto/internal/sysrand, which imports os (through
// crypto/internal/fips140/drbg, even crypto/sha256 via crypto/internal/boring
// and crypto/cipher); a wasip1 module that links os arms the Go runtime's
// netpoll, whose GC-time poll_oneoff older Envoy hosts answer with ENOSYS
// (golang/go#78513, docs/RATIONALE-filters.md).
//
// Built for wasip1 the functions use this package's own SHA-256 and HMAC
// and WASI's random_get, which every Envoy host exports. Built for any
// other target they call crypto/sha256, crypto/hmac and crypto/rand, so the
// host side (the collector verifying hash chains) keeps the standard
// library's assembly. The two are the same function: a differential fuzz
// test checks this package's SHA-256 and HMAC against crypto/sha256 and
// crypto/hmac on the host.
package guestcrypto

import "hash"

// Size is the size of a SHA-256 digest in bytes.
const Size = 32

// BlockSize is SHA-256's block size in bytes.
const BlockSize = 64

// NewSHA256 returns a SHA-256 hash.
func NewSHA256() hash.Hash { return newSHA256() }

// Sum256 returns the SHA-256 digest of b.
func Sum256(b []byte) [Size]byte { return sum256(b) }

// NewHMAC returns an HMAC-SHA-256 keyed with key.
func NewHMAC(key []byte) hash.Hash { return newHMAC(key) }

// Read fills b with cryptographically secure random bytes.
func Read(b []byte) error { return read(b) }
