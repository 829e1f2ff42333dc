package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestFragmentSymbols(t *testing.T) {
	got, err := fragmentSymbols([]byte("# comment\n\nCONFIG_A=y\n  CONFIG_B=\"x\"  \n# CONFIG_C is not set\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"CONFIG_A": "y", "CONFIG_B": `"x"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fragmentSymbols = %v, want %v", got, want)
	}
	if _, err := fragmentSymbols([]byte("CONFIG_A=y\nA=y\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("fragmentSymbols(A=y) = %v, want an error naming line 2", err)
	}
}

func TestDropped(t *testing.T) {
	want := map[string]string{"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_C": "y"}
	config := []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n")
	if got, w := dropped(want, config), []string{"CONFIG_B=y", "CONFIG_C=y"}; !reflect.DeepEqual(got, w) {
		t.Errorf("dropped = %q, want %q", got, w)
	}
	if got := dropped(map[string]string{"CONFIG_A": "y"}, config); got != nil {
		t.Errorf("dropped = %q, want none", got)
	}
}

// TestKeys: the tree's key follows the source and the fragment, not the
// initramfs; the image's key follows both.
func TestKeys(t *testing.T) {
	a := treeKey("src1", []byte("CONFIG_A=y\n"))
	if a == treeKey("src2", []byte("CONFIG_A=y\n")) || a == treeKey("src1", []byte("CONFIG_B=y\n")) {
		t.Error("treeKey ignores the source or the fragment")
	}
	if a != treeKey("src1", []byte("CONFIG_A=y\n")) {
		t.Error("treeKey is not a function of its inputs")
	}
	if imageKey(a, "cpio1") == imageKey(a, "cpio2") || imageKey(a, "cpio1") == imageKey(treeKey("src2", nil), "cpio1") {
		t.Error("imageKey ignores the tree or the initramfs")
	}
}
