// Package buildinfo is what a Meshwarden binary knows about its own build:
// the release version and commit stamped by the Makefile
//
//	go build -ldflags "-X github.com/meshwarden/meshwarden/internal/buildinfo.version=v1.2.0 \
//	  -X github.com/meshwarden/meshwarden/internal/buildinfo.commit=$(git rev-parse HEAD)"
//
// and, when the go command recorded them (a build with VCS stamping, which
// -buildvcs=false turns off), the vcs.* settings, plus the Go toolchain and
// platform. The control plane reports it on GET /v1/status and `meshwarden
// version` prints the client's and the plane's.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set at link time (-X); read-only afterwards.
var (
	version = "dev"
	commit  = ""
)

// Info describes one build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	Time      string `json:"time,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns this binary's build information. A commit stamped with -X
// wins over the go command's vcs.revision (the same commit, when both).
func Get() Info {
	in := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			if in.Commit == "" {
				in.Commit = kv.Value
			}
		case "vcs.modified":
			in.Modified = kv.Value == "true"
		case "vcs.time":
			in.Time = kv.Value
		}
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	return in
}

// String is "meshwarden <version> (commit <12 hex>[, modified][, <time>]) <go> <os>/<arch>".
func (in Info) String() string {
	s := "meshwarden " + in.Version
	if in.Commit != "" {
		s += " (commit " + in.Commit[:min(12, len(in.Commit))]
		if in.Modified {
			s += ", modified"
		}
		if in.Time != "" {
			s += ", " + in.Time
		}
		s += ")"
	}
	return s + " " + in.GoVersion + " " + in.Platform
}
