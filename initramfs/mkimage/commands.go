package main

import (
	"fmt"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
)

// toolCommands returns the commands initramfs/uroot/tools.go imports, in
// its order: that file is the one list of what the image's busybox binary
// carries (lunboot and the u-root commands), and its imports keep the
// commands' modules in that module's go.mod.
func toolCommands(path string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		return nil, fmt.Errorf("read the image's commands: %w", err)
	}
	var cmds []string
	have := map[string]bool{}
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if !strings.Contains(p, "/cmds/") {
			continue
		}
		cmds = append(cmds, p)
		have[p[strings.LastIndex(p, "/")+1:]] = true
	}
	// u-root's init starts the uinit (lunboot) and, when it returns, the
	// shell.
	for _, need := range []string{"lunboot", "init", "gosh"} {
		if !have[need] {
			return nil, fmt.Errorf("%s imports no %q command: the image needs lunboot, u-root's init and gosh", path, need)
		}
	}
	return cmds, nil
}
