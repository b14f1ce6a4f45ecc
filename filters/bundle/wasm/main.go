// Command wasm is the dye, audit and trace filters in one proxy-wasm
// module; the plugin's root id picks the filter:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filters.wasm ./filters/bundle/wasm
package main

import (
	"github.com/meshwarden/meshwarden/filters/bundle"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

func init() { proxywasm.SetVMContext(bundle.NewVMContext(proxywasm.ModuleVM())) }

func main() {}
