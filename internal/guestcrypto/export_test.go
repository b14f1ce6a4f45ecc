package guestcrypto

import "hash"

// The package's own implementations, which the wasip1 build uses: the
// tests compare them with the standard library on the host.
var PureSum256 = pureSum256

func NewPureSHA256() hash.Hash         { return newDigest() }
func NewPureHMAC(key []byte) hash.Hash { return newPureHMAC(key) }
