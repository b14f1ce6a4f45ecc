#!/usr/bin/env bash
# Builds the Pebble ACME test CA pinned in tools/pebble/go.mod once, from the
# Go module proxy, into $MESHWARDEN_CACHE (default $HOME/.cache/meshwarden),
# and prints its path. Later calls reuse the cached binary. Tests find it
# through MESHWARDEN_PEBBLE or this cache path (internal/testenv/pebbleagent).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(awk '{ if ($1=="require") { $1=""; $0=$0 } } $1=="github.com/letsencrypt/pebble/v2"{print $2}' "$root/tools/pebble/go.mod")"
cache="${MESHWARDEN_CACHE:-$HOME/.cache/meshwarden}"
bin="$cache/pebble-$version/pebble"
if [[ -x "$bin" ]] && "$bin" -version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache/pebble-$version"
echo "building pebble $version from the Go module proxy (first time only; under a minute)..." >&2
start=$(date +%s)
(
  cd "$root/tools/pebble"
  # Not every module Pebble needs is in the checksum database reachable here;
  # tools/pebble/go.sum pins every hash, so -mod=mod with GOSUMDB=off still
  # verifies against our checked-in sums.
  GOSUMDB=off GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" github.com/letsencrypt/pebble/v2/cmd/pebble
)
mv "$bin.tmp" "$bin"
echo "built pebble $version in $(( $(date +%s) - start ))s: $bin" >&2
echo "$bin"
