package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/kmod"
)

// moduleRoot writes a load order for release under a temporary root.
func moduleRoot(t *testing.T, release string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "lib", "modules", release)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := kmod.WriteOrder(&b, "test", []kmod.Entry{
		// Names no host has in /sys/module, which the command consults.
		{Name: "lunboot_fake_bus", Path: "kernel/drivers/fake/lunboot_fake_bus.ko"},
		{Name: "lunboot_fake_nic", Path: "kernel/drivers/net/lunboot_fake_nic.ko", Depends: []string{"lunboot_fake_bus"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, kmod.OrderFile), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func runModulesCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, append([]string{"modules"}, args...), &out, &errb)
	return out.String() + errb.String(), err
}

func TestModulesCommand(t *testing.T) {
	root := moduleRoot(t, "6.1.0-test-amd64")

	out, err := runModulesCmd("-n", "-root", root, "-release", "6.1.0-test-amd64")
	if err != nil {
		t.Fatalf("lunboot modules -n = %v\n%s", err, out)
	}
	for _, want := range []string{"MODULE", "lunboot_fake_bus  ", "lunboot_fake_nic", "kernel/drivers/net/lunboot_fake_nic.ko", "[lunboot_fake_bus]"} {
		if !strings.Contains(out, want) {
			t.Errorf("lunboot modules -n printed\n%s\nwant it to contain %q", out, want)
		}
	}

	// Modules for another kernel are never handed to it: every row says
	// why, and the command fails naming both releases.
	out, err = runModulesCmd("-root", root, "-release", "6.6.0-other")
	if !errors.Is(err, kmod.ErrWrongKernel) {
		t.Errorf("lunboot modules (other kernel) = %v, want ErrWrongKernel", err)
	}
	for _, want := range []string{"lunboot_fake_nic", "skipped", "modules are for another kernel", "modules: 2 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("lunboot modules (other kernel) printed\n%s\nwant it to contain %q", out, want)
		}
	}

	_, err = runModulesCmd("-root", t.TempDir(), "-release", "6.1.0-test-amd64")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lunboot modules (no modules in image) = %v, want fs.ErrNotExist", err)
	}
	if _, err := runModulesCmd("extra"); !errors.Is(err, errUsage) {
		t.Errorf("lunboot modules extra = %v, want a usage error", err)
	}
}
