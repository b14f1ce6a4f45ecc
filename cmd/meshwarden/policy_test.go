package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/auditstore/wal"
	"github.com/meshwarden/meshwarden/policies"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

const examples = "../../policies/examples"

func TestPolicyValidate(t *testing.T) {
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "bad.yaml"), []byte("apiVersion: meshwarden.io/v1alpha1\nkind: CanaryRoute\nmetadata: {name: r}\nspec: {service: payments, subsets: [], timout: 5s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		want    string
	}{
		{"examples", []string{"policy", "validate", examples}, false, "OK: 5 file(s)"},
		{"bad", []string{"policy", "validate", bad}, true, `bad.yaml:4:40: spec.timout: unknown field "timout": did you mean "timeout"?`},
		{"bad json", []string{"policy", "validate", bad, "--format", "json"}, true, `"path": "spec.timout"`},
		{"missing dir", []string{"policy", "validate", filepath.Join(bad, "nope")}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, tc.args...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v; output:\n%s", err, tc.wantErr, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestPolicyDiffLocal(t *testing.T) {
	base := t.TempDir()
	trace, err := os.ReadFile(filepath.Join(examples, "trace.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "trace.yaml"), trace, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "policy", "diff", examples, "--base", base)
	if err != nil {
		t.Fatal(err)
	}
	// Adding the dye and audit policies adds their ECDS filter configs.
	for _, want := range []string{"=== node gateway:", "added extension_configs/mw.dye", "added extension_configs/mw.audit", "FUND_TRANSFER"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
}

// TestPolicyApplyAndLog applies the examples to a stand-in of the plane's
// admin API and checks the change record, then the log command's chain
// verification, including on a tampered log.
func TestPolicyApplyAndLog(t *testing.T) {
	var gotIdentity string
	var gotFiles map[string]string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`[]`)) })
	mux.HandleFunc("POST /v1/policies:translate", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"nodes":{}}`)) })
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"revision":"0000000000000000000000000000000000000000000000000000000000000000"}`))
	})
	mux.HandleFunc("POST /v1/policies:apply", func(w http.ResponseWriter, r *http.Request) {
		gotIdentity = r.Header.Get("X-Meshwarden-Identity")
		const who = "consul token 5f1c (alice)"
		json.NewDecoder(r.Body).Decode(&gotFiles)
		fb := map[string][]byte{}
		for k, v := range gotFiles {
			fb[k] = []byte(v)
		}
		json.NewEncoder(w).Encode(map[string]string{"revision": policies.Revision(fb), "applied_by": who})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	plane := strings.TrimPrefix(srv.URL, "http://")
	const alice = "consul token 5f1c (alice)"
	log := filepath.Join(t.TempDir(), "state", "changes.jsonl")

	// The identity recorded is the one the plane authenticated; the CLI
	// cannot name its own (there is no --identity, no identity header).
	if _, _, err := runCLI(t, "policy", "apply", examples, "--plane", plane, "--insecure", "--identity", "mallory", "--changelog", log); err == nil {
		t.Fatal("--identity is still accepted")
	}
	out, _, err := runCLI(t, "policy", "apply", examples, "--plane", plane, "--insecure", "--changelog", log)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := policies.ReadDir(examples)
	rev := policies.Revision(files)
	if !strings.Contains(out, "applied revision "+rev+" by "+alice+"; recorded as change #1") {
		t.Errorf("apply output:\n%s", out)
	}
	if gotIdentity != "" || len(gotFiles) != len(files) {
		t.Errorf("plane got identity %q and %d files", gotIdentity, len(gotFiles))
	}
	recs, err := policies.ReadChangeLog(log)
	if err != nil || len(recs) != 1 || recs[0].Subject != alice || recs[0].Resource != "policyset:"+rev || recs[0].Headers["previous_revision"] != strings.Repeat("0", 64) {
		t.Fatalf("change log: %v %+v", err, recs)
	}

	out, _, err = runCLI(t, "policy", "log", "--changelog", log)
	if err != nil || !strings.Contains(out, "#1 ") || !strings.Contains(out, "alice") || !strings.Contains(out, "OK: 1 change(s), chain verified") {
		t.Errorf("log: %v\n%s", err, out)
	}
	// Signed: --changelog-key on apply, --pubkey on log; fails closed.
	keyDir := t.TempDir()
	if err := wal.GenerateKey(filepath.Join(keyDir, "p.key"), filepath.Join(keyDir, "p.pub")); err != nil {
		t.Fatal(err)
	}
	slog := filepath.Join(t.TempDir(), "signed.jsonl")
	if _, _, err := runCLI(t, "policy", "apply", examples, "--plane", plane, "--insecure", "--changelog", slog, "--changelog-key", filepath.Join(keyDir, "p.key")); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCLI(t, "policy", "log", "--changelog", slog, "--pubkey", filepath.Join(keyDir, "p.pub")); err != nil || !strings.Contains(out, "1 signed checkpoint(s) match") {
		t.Errorf("signed log: %v\n%s", err, out)
	}
	os.Remove(slog + policies.CheckpointSuffix)
	if _, _, err := runCLI(t, "policy", "log", "--changelog", slog, "--pubkey", filepath.Join(keyDir, "p.pub")); err == nil || !strings.Contains(err.Error(), "not covered by a signed checkpoint") {
		t.Errorf("signed log without its checkpoints verified: %v", err)
	}

	b, _ := os.ReadFile(log)
	os.WriteFile(log, bytes.Replace(b, []byte(`(alice)`), []byte(`(mallory)`), 1), 0o600)
	if _, _, err := runCLI(t, "policy", "log", "--changelog", log); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Errorf("tampered log verified: %v", err)
	}

	// A set with errors is never sent.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "x.yaml"), []byte("kind: Nope\n"), 0o644)
	gotFiles = nil
	_, stderr, err := runCLI(t, "policy", "apply", bad, "--plane", plane, "--insecure", "--changelog", filepath.Join(t.TempDir(), "c.jsonl"))
	if err == nil || gotFiles != nil || !strings.Contains(stderr, `x.yaml:1:7: kind: unknown kind "Nope"`) {
		t.Errorf("bad set: err %v, sent %v, stderr:\n%s", err, gotFiles != nil, stderr)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
