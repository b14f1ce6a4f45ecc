// Command wasm is the dye, audit and trace filters in one proxy-wasm
// module; the plugin's root id picks the filter:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filters.wasm ./filters/trace/bundle/wasm
package main

import (
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/trace/bundle"
)

func init() { proxywasm.SetVMContext(bundle.NewVMContext()) }

func main() {}
