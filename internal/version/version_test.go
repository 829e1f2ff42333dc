package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "8b8cfae97891376eb7d04a4226260e8bf48ad21f"
	for _, tt := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want Info
	}{
		{"no build info", nil, false, Info{Version: UnknownVersion, Commit: UnknownCommit}},
		{"go build -buildvcs=false", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, Info{Version: UnknownVersion, Commit: UnknownCommit}},
		{"go build in a checkout", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, true,
			Info{Version: UnknownVersion, Commit: rev}},
		{"go 1.24+ stamps the version too", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261121105958-8b8cfae97891+dirty"}, Settings: vcs(rev, "true")}, true,
			Info{Version: "v0.0.0-20261121105958-8b8cfae97891+dirty", Commit: rev, Modified: true}},
		{"modified without +dirty", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Settings: vcs(rev, "true")}, true,
			Info{Version: "v1.2.0+dirty", Commit: rev, Modified: true}},
		{"go install module@version", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, true, Info{Version: "v1.2.0", Commit: UnknownCommit}},
	} {
		if got := fromBuildInfo(tt.bi, tt.ok); got != tt.want {
			t.Errorf("%s: fromBuildInfo = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestInfoString(t *testing.T) {
	for _, tt := range []struct {
		i    Info
		want string
	}{
		{Info{Version: "v1.2.0", Commit: "8b8cfae97891376eb7d04a4226260e8bf48ad21f"}, "v1.2.0 (commit 8b8cfae97891)"},
		{Info{Version: "v1.2.0+dirty", Commit: "8b8cfae97891376eb7d04a4226260e8bf48ad21f", Modified: true}, "v1.2.0+dirty (commit 8b8cfae97891, modified)"},
		{Info{Version: UnknownVersion, Commit: UnknownCommit}, "devel (commit unknown)"},
	} {
		if got := tt.i.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.i, got, tt.want)
		}
	}
}

func TestLDFlags(t *testing.T) {
	i := Info{Version: "v1.2.0+dirty", Commit: "8b8cfae97891376eb7d04a4226260e8bf48ad21f", Modified: true}
	want := "-X github.com/lunboot/lunboot/internal/version.version=v1.2.0+dirty -X github.com/lunboot/lunboot/internal/version.commit=8b8cfae97891376eb7d04a4226260e8bf48ad21f -X github.com/lunboot/lunboot/internal/version.dirty=true"
	if got := LDFlags(i); got != want {
		t.Errorf("LDFlags(%+v) = %q, want %q", i, got, want)
	}
	i.Modified = false
	if got := LDFlags(i); strings.Contains(got, "dirty=") {
		t.Errorf("LDFlags(unmodified) = %q, want no dirty=", got)
	}
}
