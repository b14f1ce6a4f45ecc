package wasmhost

import "bytes"

// sharedDataFuncs are the shared data hostcalls (per vm_id, with CAS).
var sharedDataFuncs = []hostFunc{
	{"proxy_get_shared_data", i32s(5), proxyGetSharedData},
	{"proxy_set_shared_data", i32s(5), proxySetSharedData},
}

// sharedQueueFuncs are the shared queue hostcalls (per vm_id).
var sharedQueueFuncs = []hostFunc{
	{"proxy_register_shared_queue", i32s(3), proxyRegisterSharedQueue},
	{"proxy_resolve_shared_queue", i32s(5), proxyResolveSharedQueue},
	{"proxy_enqueue_shared_queue", i32s(3), proxyEnqueueSharedQueue},
	{"proxy_dequeue_shared_queue", i32s(3), proxyDequeueSharedQueue},
}

// proxyGetSharedData(key, key_size, value_ptr_ptr, value_size_ptr, cas_ptr)
// returns a value and its CAS token.
func proxyGetSharedData(in *instance, args []uint64) status {
	key, ok := in.readArg(args, 0)
	if !ok {
		return statusInvalidMemoryAccess
	}
	if !in.writable(args, 4, 4) {
		return statusInvalidMemoryAccess
	}
	v, cas, found := in.p.r.shared.get(in.p.cfg.VMID, string(key))
	if !found {
		return statusNotFound
	}
	if st := in.returnBytes(v, arg(args, 2), arg(args, 3)); st != statusOK {
		return st
	}
	return in.putU32(arg(args, 4), cas)
}

// proxySetSharedData(key, key_size, value, value_size, cas) stores a value;
// a non-zero cas must match.
func proxySetSharedData(in *instance, args []uint64) status {
	key, ok1 := in.readArg(args, 0)
	val, ok2 := in.readArg(args, 2)
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	return in.p.r.shared.set(in.p.cfg.VMID, string(key), bytes.Clone(val), arg(args, 4))
}

// proxyRegisterSharedQueue(name, name_size, id_ptr) registers (or finds) a
// queue of the plugin's vm_id and subscribes this instance's root context.
func proxyRegisterSharedQueue(in *instance, args []uint64) status {
	name, ok := in.readArg(args, 0)
	if !ok {
		return statusInvalidMemoryAccess
	}
	if !in.writable(args, 2, 4) {
		return statusInvalidMemoryAccess
	}
	return in.putU32(arg(args, 2), in.p.r.queues.register(in.p.cfg.VMID, string(name), in))
}

// proxyResolveSharedQueue(vm_id, vm_id_size, name, name_size, id_ptr) finds
// a queue by vm_id and name.
func proxyResolveSharedQueue(in *instance, args []uint64) status {
	vm, ok1 := in.readArg(args, 0)
	name, ok2 := in.readArg(args, 2)
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	id, found := in.p.r.queues.resolve(string(vm), string(name))
	if !found {
		return statusNotFound
	}
	return in.putU32(arg(args, 4), id)
}

// proxyEnqueueSharedQueue(id, value, value_size) appends to a queue and
// notifies its subscriber (proxy_on_queue_ready).
func proxyEnqueueSharedQueue(in *instance, args []uint64) status {
	val, ok := in.readArg(args, 1)
	if !ok {
		return statusInvalidMemoryAccess
	}
	sub, st := in.p.r.queues.enqueue(arg(args, 0), bytes.Clone(val))
	if sub != nil {
		sub.post(event{kind: evQueue, queue: arg(args, 0)})
	}
	return st
}

// proxyDequeueSharedQueue(id, value_ptr_ptr, value_size_ptr) takes the
// oldest value of a queue, or Empty.
func proxyDequeueSharedQueue(in *instance, args []uint64) status {
	if !in.writable(args, 1, 4) {
		return statusInvalidMemoryAccess
	}
	v, st := in.p.r.queues.dequeue(arg(args, 0))
	if st != statusOK {
		return st
	}
	return in.returnBytes(v, arg(args, 1), arg(args, 2))
}
