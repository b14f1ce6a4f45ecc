package filters

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestOfficialSHA256 rebuilds every filter exactly as make filters does and
// checks official.sha256 records its bytes: a stale record would let a
// gateway run its linked (newer) code in place of an older module. It also
// builds one filter twice, in two directories, to show the build is
// reproducible.
func TestOfficialSHA256(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three wasm modules")
	}
	o, err := OfficialBuilds()
	if err != nil {
		t.Fatal(err)
	}
	if o.GoVersion != runtime.Version() {
		t.Skipf("official.sha256 records builds by %s; this toolchain is %s and builds other bytes: run make filters-sha256 to record this toolchain's", o.GoVersion, runtime.Version())
	}
	for _, name := range Order() {
		t.Run(name, func(t *testing.T) {
			got := buildSHA256(t, name, t.TempDir())
			if want := o.SHA256[name]; got != want {
				t.Errorf("%s.wasm builds to sha256 %s, official.sha256 records %q: run make filters-sha256 (and commit it)", name, got, want)
			}
		})
	}
	t.Run("reproducible", func(t *testing.T) {
		if a, b := buildSHA256(t, "dye", t.TempDir()), buildSHA256(t, "dye", t.TempDir()); a != b {
			t.Errorf("two builds of dye differ: %s and %s", a, b)
		}
	})
}

// buildSHA256 builds filter name with make filters' command into dir.
func buildSHA256(t *testing.T, name, dir string) string {
	t.Helper()
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-o", out, "./"+name+"/wasm")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestParseOfficial(t *testing.T) {
	hexA := strings.Repeat("a", 64)
	o, err := ParseOfficial("# c\ngo go1.2.3\n" + hexA + "  dye.wasm\n")
	if err != nil || o.GoVersion != "go1.2.3" || o.SHA256["dye"] != hexA {
		t.Fatalf("ParseOfficial = %+v, %v", o, err)
	}
	for _, bad := range []string{hexA + "  dye.wasm\n", "go go1\nnot a line\n", "go go1\nabc  dye.wasm\n"} {
		if _, err := ParseOfficial(bad); err == nil || !strings.Contains(err.Error(), "make filters-sha256") {
			t.Errorf("ParseOfficial(%q) error %v, want one naming make filters-sha256", bad, err)
		}
	}
	if o, err := OfficialBuilds(); err != nil || len(o.SHA256) != len(Order()) {
		t.Errorf("the embedded official.sha256: %+v, %v; want one hash per filter of order.txt", o, err)
	}
}
