//go:build wasip1

// Command wasiprobe calls WASI functions directly on every request and adds
// their errno values as request headers (x-wasi-<probe>), so a test can
// compare Envoy's WASI surface (RuntimeConfig.WASI = WASIEnvoy) with
// wazero's complete one. A request with x-die: 1 crashes the guest on an
// ENOSYS poll_oneoff, as Go's runtime does (golang/go#78513).
package main

import (
	"strconv"
	"unsafe"

	g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"
)

func main() {}

//go:wasmimport wasi_snapshot_preview1 poll_oneoff
func pollOneoff(in, out, nsubs, nevents uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_read
func fdRead(fd, iovs, n, nread uint32) uint32

//go:wasmimport wasi_snapshot_preview1 random_get
func randomGet(p, n uint32) uint32

//go:wasmimport wasi_snapshot_preview1 clock_time_get
func clockTimeGet(id uint32, precision uint64, ret uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_prestat_get
func fdPrestatGet(fd, ret uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_write
func fdWrite(fd, iovs, n, nwritten uint32) uint32

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {}

func ptr[T any](p *T) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

// poll runs poll_oneoff with one 1 ms clock subscription and, if fd, one
// fd_read subscription on stdin.
func poll(fd bool) uint32 {
	var subs [2 * 48]byte
	n := uint32(1)
	subs[8] = 0                     // clock
	subs[24] = 0x40                 // timeout 0x0f4240 ns = 1 ms
	subs[25], subs[26] = 0x42, 0x0f // (little endian)
	if fd {
		n = 2
		subs[48+8] = 1 // fd_read, fd 0
	}
	var events [2 * 32]byte
	var nevents uint32
	return pollOneoff(ptr(&subs[0]), ptr(&events[0]), n, ptr(&nevents))
}

func add(name string, errno uint32) {
	k, v := "x-wasi-"+name, strconv.FormatUint(uint64(errno), 10)
	g.AddHeader(0, k, v)
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	add("poll-clock", poll(false))
	add("poll-fd", poll(true))
	var buf [16]byte
	var iov [2]uint32
	iov[0], iov[1] = ptr(&buf[0]), uint32(len(buf))
	var nread uint32
	add("fd-read", fdRead(0, ptr(&iov[0]), 1, ptr(&nread)))
	big := make([]byte, 65<<10)
	add("random-big", randomGet(ptr(&big[0]), uint32(len(big))))
	add("random-small", randomGet(ptr(&big[0]), 64))
	var t uint64
	add("clock-realtime", clockTimeGet(0, 1, ptr(&t)))
	add("clock-cputime", clockTimeGet(2, 1, ptr(&t)))
	var pre [8]byte
	add("prestat-3", fdPrestatGet(3, ptr(&pre[0])))
	msg := "wasiprobe to stdout\n"
	iov[0], iov[1] = g.SPtr(msg), uint32(len(msg))
	add("write-fd5", fdWrite(5, ptr(&iov[0]), 1, ptr(&nread)))
	add("write-fd1", fdWrite(1, ptr(&iov[0]), 1, ptr(&nread)))
	if _, st := g.Header(0, "x-die"); st == 0 {
		if e := poll(true); e != 0 {
			panic("poll_oneoff failed errno=" + strconv.FormatUint(uint64(e), 10))
		}
	}
	return 0
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {}
