package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/logflags"
)

func TestHelpListsSubcommands(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"controlplane", "gateway", "policy", "audit", "demo", "version"} {
		if !strings.Contains(out.String(), sub) {
			t.Errorf("--help does not mention %q:\n%s", sub, out.String())
		}
	}
}

// TestInsecureOnlyOnLoopback: the development flags that drop TLS and
// authentication are refused anywhere but on loopback, with a message
// that says what to change; the secure clients say what is missing.
func TestInsecureOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"controlplane", "--insecure-dev", "--xds-address", "0.0.0.0:0", "--consul", "127.0.0.1:1"}, "--insecure-dev serves anonymous plaintext and is refused on --xds-address 0.0.0.0:0"},
		// The deprecated spelling still sets the same address.
		{[]string{"controlplane", "--insecure-dev", "--xds-addr", "0.0.0.0:0", "--consul", "127.0.0.1:1"}, "--insecure-dev serves anonymous plaintext and is refused on --xds-address 0.0.0.0:0"},
		{[]string{"controlplane", "--insecure-dev", "--admin-addr", "10.0.0.1:18001", "--consul", "127.0.0.1:1"}, "refused on --admin-addr"},
		{[]string{"gateway", "--xds-insecure", "--xds-address", "10.1.2.3:18000", "--listen", "127.0.0.1:0", "--admin-addr", ""}, "an insecure (plaintext, anonymous) connection is refused to 10.1.2.3:18000"},
		{[]string{"gateway", "--xds-address", "127.0.0.1:18000", "--listen", "127.0.0.1:0", "--admin-addr", "", "--xds-ca-file", ""}, "no CA file"},
		{[]string{"policy", "status", "--plane", "10.0.0.1:18001", "--insecure"}, "an insecure (plaintext, anonymous) connection is refused"},
		{[]string{"gateway", "--xds-insecure", "--listen", "127.0.0.1:0", "--admin-addr", "0.0.0.0:0"}, "--admin-addr 0.0.0.0:0 is not loopback"},
		{[]string{"gateway", "--xds-insecure", "--listen", "127.0.0.1:0", "--admin-addr", "", "--wasm-wasi", "wasix"}, `--wasm-wasi "wasix": want envoy`},
		{[]string{"gateway", "--xds-insecure", "--listen", "127.0.0.1:0", "--admin-addr", "", "--wasm-native", "yes"}, `--wasm-native "yes": want on`},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			t.Setenv("MESHWARDEN_XDS_CA_FILE", "")
			_, stderr, err := runCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error()+stderr, tc.want) {
				t.Fatalf("meshwarden %v: err %v, stderr %q; want %q", tc.args, err, stderr, tc.want)
			}
		})
	}
}

// TestVersionAndSuggestions: version names the build; a mistyped
// subcommand gets a suggestion.
func TestVersionAndSuggestions(t *testing.T) {
	out, _, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "meshwarden ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %v %q", err, out)
	}
	if _, _, err := runCLI(t, "polcy"); err == nil || !strings.Contains(err.Error(), "Did you mean this?\n\tpolicy") {
		t.Fatalf("unknown command: %v", err)
	}
}

// TestLogFlags: JSON logs are one object per line; bad values say what to give.
func TestLogFlags(t *testing.T) {
	var buf bytes.Buffer
	l, err := (&logFlags{logflags.Flags{Format: "json", Level: "warn"}}).logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "shown" || rec["k"] != "v" || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"controlplane", "--log-format", "xml"}, "--log-format \"xml\": give text or json"},
		{[]string{"gateway", "--log-level", "loud"}, "--log-level \"loud\": give debug, info, warn or error"},
	} {
		if _, _, err := runCLI(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("meshwarden %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestControlPlaneHelpValueNames: flag value names in --help are words a
// user types, not a quoted command line; the old --xds-addr stays hidden.
func TestControlPlaneHelpValueNames(t *testing.T) {
	out, _, err := runCLI(t, "controlplane", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--changelog file", "--xds-address string"} {
		if !strings.Contains(out, want) {
			t.Errorf("controlplane --help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "--xds-addr ") || strings.Contains(out, "meshwarden policy log --changelog FILE`") {
		t.Errorf("controlplane --help shows the deprecated --xds-addr or a quoted command as a value name:\n%s", out)
	}
}
