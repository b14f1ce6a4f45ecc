package controlplane

import (
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

// loadForTest is the CLI's loader: policies.LoadFiles, errors as
// diagnostics. (The pipeline goldens that used it moved to
// controlplane/translate's golden harness, which runs policy files through
// the loader and the translator: go test ./controlplane/translate -run Golden.)
func loadForTest(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, error) {
	ps, diags, err := policies.LoadFiles(files, cat)
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return ps, nil
}
