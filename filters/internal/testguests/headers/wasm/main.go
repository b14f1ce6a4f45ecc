// Command headers builds the header-editing example filter (package
// filters/internal/testguests/headers) into a proxy-wasm module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o headers.wasm ./filters/internal/testguests/headers/wasm
package main

import (
	"github.com/meshwarden/meshwarden/filters/internal/testguests/headers"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

func main() {}

func init() { proxywasm.SetVMContext(headers.NewVMContext(proxywasm.ModuleVM())) }
