package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDetachUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"detach"}, "at least one device"},
		{[]string{"detach", "/dev/sda"}, "not an NBD device"},
		{[]string{"detach", "/dev/nbd0", "nbdx"}, "not an NBD device"},
		{[]string{"detach", "-timeout", "soon", "/dev/nbd0"}, "invalid value"},
	}
	for _, tt := range tests {
		_, _, err := runCmd(t, tt.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("lunboot %s = %v, want a usage error containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// TestDetachWithoutModule runs where the kernel has no NBD driver (this
// project's hosts; the guest tests in pkg/nbd cover a real disconnect).
func TestDetachWithoutModule(t *testing.T) {
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		t.Skip("this host has the nbd module loaded")
	}
	_, _, err := runCmd(t, "detach", "/dev/nbd0")
	if err == nil || !strings.Contains(err.Error(), "modprobe nbd") || errors.Is(err, errUsage) {
		t.Errorf("lunboot detach /dev/nbd0 without the driver = %v, want an error naming modprobe nbd", err)
	}
}
