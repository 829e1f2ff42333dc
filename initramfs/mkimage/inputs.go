package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lunboot/lunboot/internal/version"
	"github.com/lunboot/lunboot/pkg/kmod/depmod"
)

// inputs lists everything that goes into the image, one line each with a
// content digest where there is content: the source of every package from
// this repository the image's commands (and mkimage itself) build from, the
// version of every other module they use, the Go toolchain and the
// environment that changes its output, both modules' go.mod and go.sum,
// lunboot's version stamp, the module list, the kernel and the module files. Equal lists mean an equal
// image; the list is kept next to the image so a rebuild can say what
// changed. The commands are listed in the u-root module (urootDir), as
// u-root builds them; mkimage in the repository's module.
func inputs(ctx context.Context, repo, urootDir string, pkgs []string, ver version.Info, list []byte, vmlinuz string, mods []depmod.Module) ([]string, error) {
	lines := []string{"lunboot mkimage inputs v1", "uinit " + uinit, "env " + strings.Join(buildEnv, " "), "tags " + strings.Join(buildTags, ","),
		"version " + version.LDFlags(ver)}
	for _, k := range []string{"GOFLAGS", "GOWORK", "GOEXPERIMENT", "GOTOOLCHAIN"} {
		lines = append(lines, fmt.Sprintf("env %s=%s", k, os.Getenv(k)))
	}
	gover, err := goCmd(ctx, repo, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	lines = append(lines, "go "+gover)

	// A package from this repository (the main module, or lunboot
	// replaced by a directory in the u-root module) is "local": its
	// files are hashed, since it has no version that says it all.
	const format = `{{if not .Standard}}{{.ImportPath}}` + "\t" +
		`{{with .Module}}{{.Path}}{{if or .Main (and .Replace (not .Replace.Version))}}` + "\t" + `local{{else}}@{{.Version}}{{with .Replace}}=>{{.Path}}@{{.Version}}{{end}}{{end}}{{end}}` + "\t" +
		`{{.Dir}}` + "\t" + `{{join .GoFiles "\x00"}}` + "\t" + `{{join .EmbedFiles "\x00"}}{{end}}`
	listArgs := []string{"list", "-deps", "-tags", strings.Join(buildTags, ","), "-f", format}
	image, err := goCmd(ctx, urootDir, append(listArgs, pkgs...)...)
	if err != nil {
		return nil, err
	}
	self, err := goCmd(ctx, repo, append(listArgs, "./initramfs/mkimage")...)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(image+"\n"+self, "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		if len(f) != 6 || f[2] != "local" {
			lines = append(lines, fmt.Sprintf("pkg %s %s", f[0], f[1]))
			continue // another module: its version says it all
		}
		for _, names := range f[4:] {
			for _, n := range strings.Split(names, "\x00") {
				if n == "" {
					continue
				}
				l, err := fileLine("src "+f[0]+"/"+n, filepath.Join(f[3], n))
				if err != nil {
					return nil, err
				}
				lines = append(lines, l)
			}
		}
	}
	for _, n := range []string{"go.mod", "go.sum", urootModule + "/go.mod", urootModule + "/go.sum"} {
		l, err := fileLine(n, filepath.Join(repo, n))
		if err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
	lines = append(lines, fmt.Sprintf("modules.txt %x", sha256.Sum256(list)))
	l, err := fileLine("kernel", vmlinuz)
	if err != nil {
		return nil, err
	}
	lines = append(lines, l)
	for _, m := range mods {
		if m.Builtin {
			lines = append(lines, "module "+m.Name+" built in")
			continue
		}
		l, err := fileLine(fmt.Sprintf("module %s %s %s", m.Name, m.Rel, strings.Join(m.Depends, ",")), m.Path)
		if err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// fileLine is "<label> <sha256 of the file>".
func fileLine(label, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash inputs: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash inputs: %s: %w", path, err)
	}
	return label + " " + hex.EncodeToString(h.Sum(nil)), nil
}

// goCmd runs a go command in dir with the image's build environment and
// returns its output.
func goCmd(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), buildEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return "", fmt.Errorf("go %s: %w\n%s%s", args[0], err, msg, hint(msg))
	}
	// Only the final newline goes: go list's last line can end in a tab
	// before an empty last field, and losing it would shorten the line.
	return strings.TrimRight(string(out), "\n"), nil
}

// changes compares the inputs of the last build (kept in the output
// directory) with these. It returns nil when the image there is up to date,
// else a few lines saying what differs.
func changes(out string, lines []string) []string {
	b, err := os.ReadFile(filepath.Join(out, stampName))
	if err != nil {
		return []string{"no previous build in " + out}
	}
	for _, n := range []string{imageName, kernelName, flashName} {
		if _, err := os.Stat(filepath.Join(out, n)); err != nil {
			return []string{n + " missing"}
		}
	}
	old := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		old[l] = true
	}
	now := map[string]bool{}
	var diff []string
	for _, l := range lines {
		now[l] = true
		if !old[l] {
			diff = append(diff, "+ "+l)
		}
	}
	for l := range old {
		if !now[l] {
			diff = append(diff, "- "+l)
		}
	}
	sort.Strings(diff)
	if len(diff) > 6 {
		diff = append(diff[:6], fmt.Sprintf("… and %d more", len(diff)-6))
	}
	return diff
}
