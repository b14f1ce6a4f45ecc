#!/usr/bin/env bash
# Regenerates the raw benchmark output behind docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/bench
mkdir -p "$out"
pkgs=$(go list ./... | xargs -n1 sh -c 'grep -lq "^func Benchmark" $(go list -f "{{.Dir}}" "$0")/*_test.go 2>/dev/null && echo "$0"' )
for p in $pkgs; do
  name=$(echo "$p" | sed 's|.*/meshwarden/||; s|/|_|g')
  echo "bench $p"
  go test -run '^$' -bench . -benchmem -count 5 "$p" | tee "$out/$name.txt"
done
