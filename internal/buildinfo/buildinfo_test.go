package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	in := Info{Version: "v1.2.0", Commit: "0123456789abcdef0123", Modified: true, GoVersion: "go1.26.0", Platform: "linux/amd64"}
	if got, want := in.String(), "meshwarden v1.2.0 (commit 0123456789ab, modified) go1.26.0 linux/amd64"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if got := Get(); got.GoVersion != runtime.Version() || got.Version == "" {
		t.Fatalf("Get() = %+v", got)
	}
}

// TestLinkerStamp builds a tiny program with -X as the Makefile does and
// checks the stamp testdata/stamp prints (vcs stamping off, as GOFLAGS has it here).
func TestLinkerStamp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "stamp")
	pkg := "github.com/meshwarden/meshwarden/internal/buildinfo"
	out, err := exec.Command("go", "build", "-buildvcs=false", "-o", bin,
		"-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".commit=feedfacecafebeef00", "./testdata/stamp").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err = exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "meshwarden v9.8.7 (commit feedfacecafe) " + runtime.Version(); !strings.HasPrefix(string(out), want) {
		t.Fatalf("stamped binary prints %q, want prefix %q", out, want)
	}
}
