package wasmhost

import (
	"context"
	"errors"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const i32, i64 = api.ValueType(api.ValueTypeI32), api.ValueType(api.ValueTypeI64)

// hostFunc is one proxy-wasm hostcall of the "env" module: the name a guest
// imports, its parameter types and its Go implementation. Every hostcall
// returns one i32, a proxy_result_t.
//
// The hostcalls are named values grouped by ABI area, one file each
// (host_log.go, host_time.go, host_properties.go, host_buffers.go, host_headers.go,
// host_stream.go, host_httpcall.go, host_shared.go, host_metrics.go,
// host_unsupported.go); envModule registers them all.
type hostFunc struct {
	name   string
	params []api.ValueType
	fn     func(in *instance, args []uint64) status
}

// i32s returns n i32 parameter types: most hostcalls take only pointers,
// sizes and enums.
func i32s(n int) []api.ValueType {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = i32
	}
	return p
}

// arg returns the i-th argument of a hostcall as the u32 it is.
func arg(args []uint64, i int) uint32 { return uint32(args[i]) }

// hostFuncs lists every hostcall by ABI area, in the order envModule
// exports them.
var hostFuncs = [][]hostFunc{
	logFuncs,
	timeFuncs,
	propertyFuncs,
	bufferFuncs,
	headerMapFuncs,
	streamFuncs,
	httpCallFuncs,
	sharedDataFuncs,
	sharedQueueFuncs,
	metricFuncs,
	unsupportedFuncs,
}

// envModule builds the "env" host module with every proxy-wasm 0.2.0/0.2.1
// hostcall. Each hostcall finds its instance in the call's context, checks
// every guest pointer, and answers a bad one with InvalidMemoryAccess.
func envModule(rt wazero.Runtime) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder("env")
	for _, area := range hostFuncs {
		for _, f := range area {
			f.export(b)
		}
	}
	return b
}

// export adds f to the host module: the instance comes from the call's
// context (instKey); a call without one fails with InternalFailure.
func (f hostFunc) export(b wazero.HostModuleBuilder) {
	fn := f.fn
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, s []uint64) {
		in, _ := ctx.Value(instKey{}).(*instance)
		if in == nil {
			s[0] = uint64(statusInternalFailure)
			return
		}
		s[0] = uint64(fn(in, s))
	}), f.params, []api.ValueType{i32}).Export(f.name)
}

// readArg reads the guest bytes named by the (pointer, size) arguments at
// i and i+1.
func (in *instance) readArg(args []uint64, i int) ([]byte, bool) {
	return in.read(arg(args, i), arg(args, i+1))
}

// writable reports whether the guest's n bytes at the pointer argument i
// can be written: a hostcall checks its out-pointers before it acts.
func (in *instance) writable(args []uint64, i int, n uint32) bool {
	_, ok := in.read(arg(args, i), n)
	return ok
}

// limit records that the guest exceeded a host limit: the hostcall fails
// with BadArgument and the callback fails per the fail policy.
func (in *instance) limit(msg string) status {
	if in.curS != nil && in.curS.limitErr == nil {
		in.curS.limitErr = &guestError{Plugin: in.p.cfg.Name, Callback: "hostcall", Kind: "limit", Err: errors.New(msg)}
	}
	return statusBadArgument
}

func (in *instance) read(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return in.mem.Read(ptr, size)
}

func (in *instance) putU32(ptr, v uint32) status {
	if !in.mem.WriteUint32Le(ptr, v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func (in *instance) putU64(ptr uint32, v uint64) status {
	if !in.mem.WriteUint64Le(ptr, v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// returnSlot allocates size bytes in the guest and writes their address and
// size to ptrPtr and sizePtr; fill writes the data into the allocation.
// Views of guest memory taken before are stale after the allocator ran.
func (in *instance) returnSlot(size int, ptrPtr, sizePtr uint32, fill func([]byte)) status {
	mem := in.mem
	if _, ok := mem.Read(ptrPtr, 4); !ok {
		return statusInvalidMemoryAccess
	}
	if _, ok := mem.Read(sizePtr, 4); !ok {
		return statusInvalidMemoryAccess
	}
	var p uint32
	if size > 0 {
		var ok bool
		if p, ok = in.allocate(size); !ok {
			return statusInternalFailure
		}
		view, ok := in.mem.Read(p, uint32(size)) // fresh view: memory may have grown
		if !ok {
			return statusInvalidMemoryAccess
		}
		fill(view)
	}
	if st := in.putU32(ptrPtr, p); st != statusOK {
		return st
	}
	return in.putU32(sizePtr, uint32(size))
}

func (in *instance) returnBytes(b []byte, ptrPtr, sizePtr uint32) status {
	return in.returnSlot(len(b), ptrPtr, sizePtr, func(v []byte) { copy(v, b) })
}

func (in *instance) returnString(str string, ptrPtr, sizePtr uint32) status {
	return in.returnSlot(len(str), ptrPtr, sizePtr, func(v []byte) { copy(v, str) })
}

func (in *instance) returnPairs(pairs [][2]string, ptrPtr, sizePtr uint32) status {
	return in.returnSlot(pairsSize(pairs), ptrPtr, sizePtr, func(v []byte) { encodePairs(v, pairs) })
}
