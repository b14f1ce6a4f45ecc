package logflags

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlags(t *testing.T) {
	defer runtime.SetMutexProfileFraction(runtime.SetMutexProfileFraction(-1))
	defer runtime.SetBlockProfileRate(0)
	var f Flags
	fl := pflag.NewFlagSet("x", pflag.ContinueOnError)
	f.Register(fl)
	if err := fl.Parse([]string{"--log-format", "json", "--log-level", "warn", "--mutex-profile-fraction", "7", "--block-profile-rate", "1us"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l, err := f.Logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	Printf(l.With("k", "v"))("also %s", "hidden")
	l.Warn("shown", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "shown" || rec["k"] != "v" || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 7 {
		t.Fatalf("mutex profile fraction = %d, want 7", got)
	}
	if got := strings.Join(f.Args(), " "); got != "--log-format json --log-level warn" {
		t.Fatalf("Args() = %q", got)
	}
	for _, bad := range []Flags{{Format: "xml"}, {Level: "loud"}, {MutexFraction: -1}, {BlockRate: -time.Second}} {
		if _, err := bad.Logger(&buf); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
