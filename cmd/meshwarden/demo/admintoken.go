package demo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// GatewayAdminTokenFile is the bearer token file the demo gateway's
// /debug/pprof/ requires (--admin-token-file), made once per work dir.
func (s *Stack) GatewayAdminTokenFile() (string, error) {
	p := filepath.Join(s.opts.WorkDir, "gateway-admin.token")
	if _, err := os.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
		return p, err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("gateway admin token: %w", err)
	}
	return p, os.WriteFile(p, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}
