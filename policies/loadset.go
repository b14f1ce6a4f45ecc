package policies

import "github.com/meshwarden/meshwarden/ir"

// LoadSet is LoadFiles in the shape of the control plane's policy loader
// (controlplane.PolicyLoader): a set with any error is refused whole, and
// the error is the diagnostics (every one with its file:line:col and field).
func LoadSet(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, error) {
	ps, diags, err := LoadFiles(files, cat)
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return ps, nil
}
