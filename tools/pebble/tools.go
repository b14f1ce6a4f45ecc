//go:build tools

// Package tools pins the Pebble ACME test CA that the certificate tests run.
// It is a separate module so Pebble's dependencies never enter the main
// go.mod; scripts/ensure-pebble.sh builds it once into $HOME/.cache.
package tools

import _ "github.com/letsencrypt/pebble/v2/cmd/pebble"
