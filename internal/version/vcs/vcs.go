// Package vcs reads a build's identity from the git checkout it is built
// in, for the link-time stamp of package version. It runs at build time
// (make build, initramfs/mkimage), never in lunboot itself.
package vcs

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/version"
)

// Describe returns the identity of the checkout at dir:
//
//   - Commit: HEAD's full hash.
//   - Modified: `git status --porcelain` lists anything (what the go
//     command's own VCS stamping calls vcs.modified).
//   - Version: the nearest release tag v<semver> as `git describe` writes
//     it ("v1.2.0" on the tag, "v1.2.0-3-g8b8cfae1c2d3" three commits
//     later), or, with no tag in the history, the Go pseudo-version of HEAD
//     ("v0.0.0-20261206033144-8b8cfae1c2d3": the commit's committer time in
//     UTC and its 12-digit hash, https://go.dev/ref/mod#pseudo-versions);
//     "+dirty" appended when Modified, as the go command does since 1.24.
//
// It fails when dir is not a git checkout or git is not installed.
func Describe(ctx context.Context, dir string) (version.Info, error) {
	var i version.Info
	commit, err := git(ctx, dir, "rev-parse", "--verify", "HEAD")
	if err != nil {
		return i, err
	}
	i.Commit = commit
	st, err := git(ctx, dir, "status", "--porcelain")
	if err != nil {
		return i, err
	}
	i.Modified = st != ""
	if d, err := git(ctx, dir, "describe", "--tags", "--match", "v[0-9]*", "--abbrev=12", "HEAD"); err == nil && d != "" {
		i.Version = d
	} else {
		ct, err := git(ctx, dir, "log", "-1", "--format=%ct", "HEAD")
		if err != nil {
			return i, err
		}
		sec, err := strconv.ParseInt(ct, 10, 64)
		if err != nil {
			return i, fmt.Errorf("git log --format=%%ct: commit time %q: %w", ct, err)
		}
		i.Version = "v0.0.0-" + time.Unix(sec, 0).UTC().Format("20060102150405") + "-" + i.ShortCommit()
	}
	if i.Modified {
		i.Version += "+dirty"
	}
	return i, nil
}

// git runs git in dir and returns its trimmed output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
