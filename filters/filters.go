// Package filters holds what every Meshwarden proxy-wasm filter shares with
// the rest of the product: the ordered list of filters. Each filter lives in
// its own folder (dye/, audit/, trace/) and builds to a .wasm module with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o NAME.wasm ./filters/NAME/wasm
package filters

import (
	_ "embed"
	"strings"
)

//go:embed order.txt
var orderTxt string

// Order returns the filter names in the order requests pass through them.
func Order() []string {
	var out []string
	for _, line := range strings.Split(orderTxt, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out
}
