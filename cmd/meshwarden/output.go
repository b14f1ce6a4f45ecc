package main

import (
	"encoding/json"
	"io"
)

// writeJSON writes v as indented JSON: the -o json output of every command.
func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
