//go:build !wasip1

package abi

// defaultHost is the host of a native build until SetHost: every hostcall
// fails with StatusInternalFailure.
func defaultHost() Host { return unsetHost{} }
