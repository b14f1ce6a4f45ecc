//go:build !unix

package policies

import "os"

// On systems without flock, appends are serialised within one process only.
func lockFile(*os.File) error   { return nil }
func unlockFile(*os.File) error { return nil }
