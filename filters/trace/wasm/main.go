// Command wasm is the trace filter as a proxy-wasm module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o trace.wasm ./filters/trace/wasm
package main

import (
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/trace"
)

func init() { proxywasm.SetVMContext(trace.NewVMContext(proxywasm.ModuleVM())) }

func main() {}
