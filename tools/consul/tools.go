//go:build tools

// Package tools pins the Consul agent that tests and the demo run. It is a
// separate module so Consul's large dependency graph never enters the main
// go.mod; scripts/ensure-consul.sh builds it once into $HOME/.cache.
package tools

import _ "github.com/hashicorp/consul"
