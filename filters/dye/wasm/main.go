// Command wasm is the dye filter as a proxy-wasm module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o dye.wasm ./filters/dye/wasm
package main

import (
	"github.com/meshwarden/meshwarden/filters/dye"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

func init() { proxywasm.SetVMContext(dye.NewVMContext(proxywasm.ModuleVM())) }

func main() {}
