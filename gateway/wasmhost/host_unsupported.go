package wasmhost

// unsupportedFuncs are the hostcalls the gateway does not support: gRPC calls
// and foreign functions. They exist so modules importing them still load,
// as in Envoy builds without those features.
var unsupportedFuncs = []hostFunc{
	{"proxy_get_status", i32s(3), proxyGetStatus},
	{"proxy_call_foreign_function", i32s(6), proxyNotFound},
	{"proxy_grpc_call", i32s(12), proxyUnimplemented},
	{"proxy_grpc_stream", i32s(9), proxyUnimplemented},
	{"proxy_grpc_send", i32s(4), proxyUnimplemented},
	{"proxy_grpc_cancel", i32s(1), proxyUnimplemented},
	{"proxy_grpc_close", i32s(1), proxyUnimplemented},
}

// proxyGetStatus(code_ptr, message_ptr_ptr, message_size_ptr) answers code 0
// and an empty message: there is no gRPC call whose status it could be.
func proxyGetStatus(in *instance, args []uint64) status {
	if st := in.putU32(arg(args, 0), 0); st != statusOK {
		return st
	}
	return in.returnBytes(nil, arg(args, 1), arg(args, 2))
}

func proxyNotFound(*instance, []uint64) status { return statusNotFound }

func proxyUnimplemented(*instance, []uint64) status { return statusUnimplemented }
