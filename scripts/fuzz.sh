#!/usr/bin/env bash
# fuzz.sh runs every native Go fuzz target in the module for the given time.
# `go test` alone already runs each target's checked-in seeds (testdata/fuzz).
set -euo pipefail
t=${1:-20s}
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $f ($t)"
    go test -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "$pkg"
  done
done
