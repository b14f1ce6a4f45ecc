package v8host_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/internal/v8host"
)

// TestCryptoRandGuestDiesOnHostsBeforePR533 is the negative control of
// TestLoadLoopOnHostsBeforePR533: a guest seeded from crypto/rand, as the
// filters were (testguests/cryptorand: the headers example plus one
// crypto/rand.Read), under the same load on the same host (every
// poll_oneoff ENOSYS) dies with issue 19's `fatal error: poll_oneoff
// failed`, and the story reports it; on the PR #533 host the same guest
// runs through, its poll_oneoff calls clock-only.
func TestCryptoRandGuestDiesOnHostsBeforePR533(t *testing.T) {
	if testing.Short() {
		t.Skip("load loop: skipped in -short")
	}
	needNode(t)
	wasm := filepath.Join(t.TempDir(), "cryptorand.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", wasm, "../testguests/cryptorand/wasm")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cryptorand.wasm: %v\n%s", err, msg)
	}
	const cryptoRandN = 20000
	in := func(poll string) v8host.Input {
		return v8host.Input{
			VMs:            []v8host.VM{{Name: "cryptorand", Wasm: wasm}},
			RecordRequests: 1, RecordCalls: 1, PollOneoff: poll,
			Environ: []string{"GODEBUG=gctrace=1", "GOGC=1"},
			Requests: []v8host.Request{{Repeat: cryptoRandN,
				RequestHeaders:  hdrs(":method", "GET", ":path", "/v1/accounts/ACC-2", "x-mw-remove", "1"),
				ResponseHeaders: hdrs(":status", "200")}},
		}
	}
	ok := run(t, in("pr533"))
	if ok.RequestCount != cryptoRandN || ok.WASI.Calls["poll_oneoff"] == 0 {
		t.Fatalf("pr533 host: %d requests, poll_oneoff %v: want all %d, and the crypto/rand guest reaching poll_oneoff", ok.RequestCount, ok.WASI.Calls["poll_oneoff"], cryptoRandN)
	}
	out := runAllowFailure(t, in("enosys"))
	if out.OK {
		t.Fatalf("the crypto/rand guest ran all %d requests with poll_oneoff answering ENOSYS (%d GC cycles): the control no longer shows golang/go#78513", out.RequestCount, out.VMs[0].GCCycles)
	}
	tail := strings.Join(out.StderrTail, "\n")
	if !strings.Contains(tail, "fatal error: poll_oneoff failed") {
		t.Fatalf("the crypto/rand guest died for another reason: %v", out.Err())
	}
	t.Logf("as issue 19 reports, the crypto/rand guest died after %d requests: %s", out.RequestCount, out.Failure)
}
