package vcs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
)

// TestDescribe builds a small history and checks each identity Describe
// gives it: untagged (a Go pseudo-version), modified, on a tag, past a tag.
func TestDescribe(t *testing.T) {
	gitBin := testenv.RequireBinaries(t, "git")[0]
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gitBin, append([]string{"-C", dir}, args...)...)
		// A fixed committer time, for the pseudo-version.
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.com", "GIT_AUTHOR_DATE=2026-11-21T10:59:58Z", "GIT_COMMITTER_DATE=2026-11-21T10:59:58Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
		return string(regexp.MustCompile(`\s+$`).ReplaceAll(out, nil))
	}
	ctx := context.Background()
	if _, err := Describe(ctx, dir); err == nil {
		t.Errorf("Describe(not a checkout) succeeded, want an error")
	}
	git("init", "-q")
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "1")
	git("add", "a")
	git("commit", "-qm", "one")
	head := git("rev-parse", "HEAD")

	i, err := Describe(ctx, dir)
	if want := "v0.0.0-20261121105958-" + head[:12]; err != nil || i.Version != want || i.Commit != head || i.Modified {
		t.Errorf("Describe(untagged) = %+v, %v; want %s, commit %s, unmodified", i, err, want, head)
	}
	write("a", "2")
	i, err = Describe(ctx, dir)
	if want := "v0.0.0-20261121105958-" + head[:12] + "+dirty"; err != nil || i.Version != want || !i.Modified {
		t.Errorf("Describe(modified) = %+v, %v; want %s, modified", i, err, want)
	}
	git("commit", "-qam", "two")
	git("tag", "v1.2.0")
	i, err = Describe(ctx, dir)
	if err != nil || i.Version != "v1.2.0" || i.Modified {
		t.Errorf("Describe(on tag v1.2.0) = %+v, %v; want v1.2.0", i, err)
	}
	write("b", "untracked")
	git("tag", "not-a-version") // ignored: only v<digit>… tags are versions
	i, err = Describe(ctx, dir)
	if err != nil || i.Version != "v1.2.0+dirty" || !i.Modified {
		t.Errorf("Describe(tag, untracked file) = %+v, %v; want v1.2.0+dirty", i, err)
	}
	git("add", "b")
	git("commit", "-qm", "three")
	head = git("rev-parse", "HEAD")
	i, err = Describe(ctx, dir)
	if want := "v1.2.0-1-g" + head[:12]; err != nil || i.Version != want || i.Commit != head {
		t.Errorf("Describe(one past v1.2.0) = %+v, %v; want %s", i, err, want)
	}
}
