// Command ldflags prints the linker flags that stamp lunboot's version and
// commit (package version) for the checkout in the current directory:
//
//	go build -ldflags "$(go run ./internal/version/ldflags)" ./cmds/lunboot
//
// Outside a git checkout it warns on stderr and prints nothing, so the build
// still succeeds and the binary says "devel".
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/lunboot/lunboot/internal/version"
	"github.com/lunboot/lunboot/internal/version/vcs"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i, err := vcs.Describe(ctx, ".")
	if err != nil {
		fmt.Fprintf(os.Stderr, "ldflags: warning: no version stamp, the binary will say %q: %v\n", version.UnknownVersion, err)
		return
	}
	fmt.Println(version.LDFlags(i))
}
