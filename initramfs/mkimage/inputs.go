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
// content digest where there is content: the source of every main-module
// package the image's commands (and mkimage itself) build from, the version
// of every other module they use, the Go toolchain and the environment that
// changes its output, lunboot's version stamp, the module list, the kernel
// and the module files.
// Equal lists mean an equal image; the list is kept next to the image so a
// rebuild can say what changed.
func inputs(ctx context.Context, repo string, pkgs []string, ver version.Info, list []byte, vmlinuz string, mods []depmod.Module) ([]string, error) {
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

	const format = `{{if not .Standard}}{{.ImportPath}}` + "\t" +
		`{{with .Module}}{{.Path}}@{{.Version}}{{with .Replace}}=>{{.Path}}@{{.Version}}{{end}}{{if .Main}}` + "\t" + `main{{end}}{{end}}` + "\t" +
		`{{.Dir}}` + "\t" + `{{join .GoFiles "\x00"}}` + "\t" + `{{join .EmbedFiles "\x00"}}{{end}}`
	args := append([]string{"list", "-deps", "-tags", strings.Join(buildTags, ","), "-f", format}, pkgs...)
	args = append(args, "./initramfs/mkimage")
	out, err := goCmd(ctx, repo, args...)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			continue
		}
		if len(f) != 6 || f[2] != "main" {
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
	for _, n := range []string{"go.mod", "go.sum"} {
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

// goCmd runs a go command in the repository with the image's build
// environment and returns its output.
func goCmd(ctx context.Context, repo string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), buildEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return "", fmt.Errorf("go %s: %w\n%s%s", args[0], err, msg, hint(msg, args))
	}
	return strings.TrimSpace(string(out)), nil
}

// changes compares the inputs of the last build (kept in the output
// directory) with these. It returns nil when the image there is up to date,
// else a few lines saying what differs.
func changes(out string, lines []string) []string {
	b, err := os.ReadFile(filepath.Join(out, stampName))
	if err != nil {
		return []string{"no previous build in " + out}
	}
	for _, n := range []string{imageName, kernelName} {
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
