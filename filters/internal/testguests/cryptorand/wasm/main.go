// Command cryptorand is the headers example filter seeded from crypto/rand,
// as every filter was before issue 19: the negative control of v8host's
// TestCryptoRandGuestDiesOnHostsBeforePR533. It is not a filter to deploy.
//
// crypto/rand links os, and its first Read starts a one-minute
// time.AfterFunc (crypto/internal/sysrand's "blocked on entropy" warning).
// The first timer of a wasip1 program arms the runtime's netpoll
// (netpollGenericInit), and from then on the scheduler calls poll_oneoff
// with a clock subscription whenever it idles, as in GC: the call that
// hosts before proxy-wasm-cpp-host PR #533 answer ENOSYS
// (golang/go#78513). Linking os alone does not do it.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o cryptorand.wasm ./filters/internal/testguests/cryptorand/wasm
package main

import (
	"crypto/rand"

	"github.com/meshwarden/meshwarden/filters/internal/testguests/headers"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

func main() {}

func init() {
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	proxywasm.SetVMContext(headers.NewVMContext(proxywasm.ModuleVM()))
}
