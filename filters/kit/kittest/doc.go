// Package kittest holds the test helpers the filters' tests share: the check
// that a README shows its testdata examples and that they parse, tables of
// configuration errors, a log sink for the host, a refused start in the
// native emulator, and guest modules built once per test binary and run in
// the gateway's host (gateway/wasmhost). Only tests import it.
package kittest
