//go:build !linux

package kmod

import (
	"errors"
	"fmt"
)

var errNotLinux = errors.New("kernel modules need Linux")

func loadFile(path, params string) error { return fmt.Errorf("load %s: %w", path, errNotLinux) }

func release() (string, error) { return "", errNotLinux }

func classify(err error) (Status, error) {
	if err == nil {
		return Loaded, nil
	}
	return Failed, err
}

// Explain renders a module error for a console table.
func Explain(err error) string { return err.Error() }
