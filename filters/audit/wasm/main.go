// Command wasm is the audit filter as a proxy-wasm module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o audit.wasm ./filters/audit/wasm
package main

import (
	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

func init() { proxywasm.SetVMContext(audit.NewVMContext(proxywasm.ModuleVM())) }

func main() {}
