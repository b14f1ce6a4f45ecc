// Package filters holds what every Meshwarden proxy-wasm filter shares with
// the rest of the product: the ordered list of filters. Each filter lives in
// its own folder (dye/, audit/, trace/) and builds to a .wasm module with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o NAME.wasm ./filters/NAME/wasm
package filters

import (
	_ "embed"
	"errors"
	"fmt"
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

//go:embed official.sha256
var officialTxt string

// Official is the record of the filters' official builds (official.sha256):
// the Go toolchain that built them and the sha256 of each module by filter
// name. A host that links the filters natively runs a module natively only
// when its sha256 is the one recorded here for that filter.
type Official struct {
	// GoVersion is the toolchain of the recorded builds (go1.26.8): another
	// toolchain builds other bytes.
	GoVersion string
	// SHA256 maps a filter name ("dye") to the lowercase hex sha256 of its
	// official .wasm.
	SHA256 map[string]string
}

// OfficialBuilds parses official.sha256. The file is embedded, so a gateway
// built from a fresh clone knows the hashes without building the modules.
func OfficialBuilds() (Official, error) { return ParseOfficial(officialTxt) }

// ParseOfficial parses the format of official.sha256: comments (#), one
// "go VERSION" line, then sha256sum lines ("HEX  NAME.wasm").
func ParseOfficial(txt string) (Official, error) {
	o := Official{SHA256: map[string]string{}}
	for i, line := range strings.Split(txt, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "go":
			o.GoVersion = f[1]
		case len(f) == 2 && len(f[0]) == 64 && strings.HasSuffix(f[1], ".wasm"):
			o.SHA256[strings.TrimSuffix(f[1], ".wasm")] = strings.ToLower(f[0])
		default:
			return Official{}, fmt.Errorf("official.sha256:%d: %q: want \"go VERSION\" or \"SHA256  NAME.wasm\" (sha256sum output): regenerate with make filters-sha256", i+1, line)
		}
	}
	if o.GoVersion == "" {
		return Official{}, errors.New("official.sha256: no \"go VERSION\" line: regenerate with make filters-sha256")
	}
	return o, nil
}
