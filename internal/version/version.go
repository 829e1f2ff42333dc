// Package version says which lunboot this binary is: the version and the
// commit it was built from. Firmware in flash must say what it is, so the
// build stamps both into the binary (LDFlags, with the values package
// internal/version/vcs reads from git) and `lunboot version` and the boot's
// first console line print them.
//
// The stamp is set at link time:
//
//	go build -ldflags "$(go run ./internal/version/cmd/ldflags)" ./cmds/lunboot
//
// which `make build` and the image build (initramfs/mkimage, through
// u-root's busybox build) both do. u-root's busybox build compiles the
// commands in a generated module outside the repository, so the Go
// toolchain's own VCS stamping (vcs.revision in runtime/debug.BuildInfo)
// never reaches the image; without the link-time stamp a binary falls back
// to that VCS information and then to "devel".
package version

import (
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X (the variables' full names are in LDFlags). They are
// unexported so that nothing but the linker sets them.
var (
	version string // "v1.2.0", "v1.2.0-3-g8b8cfae1c2d3", "v0.0.0-20261206033144-8b8cfae1c2d3", with "+dirty"
	commit  string // the full commit hash
	dirty   string // "true" when the working tree had uncommitted changes
)

// What Get reports for a binary built without a stamp or VCS information
// (go test, go build -buildvcs=false).
const (
	UnknownVersion = "devel"
	UnknownCommit  = "unknown"
)

// Info is a build's identity.
type Info struct {
	// Version is a semantic version: the release tag, git describe's
	// distance from it, or a Go pseudo-version for an untagged history.
	// It ends in "+dirty" when Modified.
	Version string
	// Commit is the full hash of the commit built.
	Commit string
	// Modified reports uncommitted changes in the working tree at build time.
	Modified bool
}

// Get returns this binary's identity.
func Get() Info {
	if version != "" || commit != "" {
		i := Info{Version: version, Commit: commit, Modified: dirty == "true"}
		if i.Version == "" {
			i.Version = UnknownVersion
		}
		if i.Commit == "" {
			i.Commit = UnknownCommit
		}
		return i
	}
	return fromBuildInfo(debug.ReadBuildInfo())
}

// fromBuildInfo reads what the go command recorded (go build in a checkout
// with -buildvcs, go install module@version).
func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	i := Info{Version: UnknownVersion, Commit: UnknownCommit}
	if !ok || bi == nil {
		return i
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		i.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Commit = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	if i.Modified && i.Version != UnknownVersion && !strings.HasSuffix(i.Version, "+dirty") {
		i.Version += "+dirty"
	}
	return i
}

// ShortCommit is the commit's first 12 hex digits, as Go pseudo-versions
// and `git log --abbrev=12` write it.
func (i Info) ShortCommit() string {
	if len(i.Commit) > 12 {
		return i.Commit[:12]
	}
	return i.Commit
}

// String is the one-line identity the boot's first console line and
// `lunboot version` print: "v0.0.0-20261206033144-8b8cfae1c2d3+dirty
// (commit 8b8cfae1c2d3, modified)".
func (i Info) String() string {
	s := i.Version + " (commit " + i.ShortCommit()
	if i.Modified {
		s += ", modified"
	}
	return s + ")"
}

// Path is this package's import path, which the linker's -X flags name.
const Path = "github.com/lunboot/lunboot/internal/version"

// LDFlags returns the linker flags that stamp i into a binary:
// "-X <Path>.version=… -X <Path>.commit=… [-X <Path>.dirty=true]". None of
// the values contains white space (versions and hashes never do), so the
// result can be passed as one -ldflags argument.
func LDFlags(i Info) string {
	s := "-X " + Path + ".version=" + i.Version + " -X " + Path + ".commit=" + i.Commit
	if i.Modified {
		s += " -X " + Path + ".dirty=true"
	}
	return s
}
