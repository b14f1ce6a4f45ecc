package certs

import "github.com/meshwarden/meshwarden/controlplane"

// The plane composes a Manager as its SecretSource; certs does not import
// the plane, so the assertion lives in a test.
var _ controlplane.SecretSource = (*Manager)(nil)
