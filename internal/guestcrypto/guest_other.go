//go:build !wasip1

package guestcrypto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"hash"
)

func newSHA256() hash.Hash         { return sha256.New() }
func sum256(b []byte) [Size]byte   { return sha256.Sum256(b) }
func newHMAC(key []byte) hash.Hash { return hmac.New(sha256.New, key) }

func read(b []byte) error {
	_, err := rand.Read(b)
	return err
}
