//go:build lunbootimage

package main

import "errors"

// startCPUProfile is not in the boot image (built with the lunbootimage
// tag): profiles are taken with the host binary, and runtime/pprof would
// only add bytes to flash.
func startCPUProfile(string) (func(), error) {
	return nil, errors.New("not in the boot image: profile with the host build of lunboot (make build)")
}
