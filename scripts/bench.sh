#!/usr/bin/env bash
# Regenerates every figure in docs/BENCHMARKS.md: each area's benchmark, run
# exactly as its docs/bench/<area>.md says, raw output kept in docs/bench/raw/.
# Takes about 8 minutes on 2 idle cores (much longer under load). Run on a quiet machine; compare rows
# measured side by side in one run (ratios), not across runs.
#   scripts/bench.sh            # everything
#   scripts/bench.sh gateway    # one area (names below; issue18: the four filter-speed figures side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
raw=docs/bench/raw
mkdir -p "$raw"
only="${1:-}"

run() { # area name, then the command
  local area="$1"; shift
  if [[ -n "$only" && "$only" != "$area" ]]; then return; fi
  echo "=== $area: $*"
  { echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"; echo "\$ $*"; "$@"; } 2>&1 | tee -a "$raw/$area.txt"
}

make --no-print-directory filters >/dev/null
# The gateway comparison includes nginx from Debian; install it when we can
# (root with apt-get), otherwise the harness says the row was skipped.
if [[ -z "$only" || "$only" == gateway ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "--- installing nginx (Debian) for the gateway comparison"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; } >/dev/null ||
      echo "nginx could not be installed; its row will be skipped" >&2
  fi
fi
run abi          go test -run '^$' -bench ABIOverhead -benchmem -count 3 ./filters/proxywasm/
run abi          go test -run '^$' -bench Map -benchmem -count 3 ./filters/proxywasm/internal/abi/
run wasmhost     go test -run '^$' -bench . -benchmem -count 3 ./gateway/wasmhost/
run filters      go test -run '^$' -bench 'EngineApply|ParseTraceparent|BaggageValue' -benchmem ./filters/dye/ ./internal/tracectx/
run filters      go test -run '^$' -bench 'BenchmarkHost' -benchtime 3000x -count 2 ./filters/trace/
run gateway      go run ./tools/gatewaybench -duration 5s -rounds 3 -conc 32 -rate 1000 -filters-dir bin/filters
run controlplane go test -run '^$' -bench ConsulChange -benchtime 300x -count 2 ./controlplane
run controlplane go test -run '^$' -bench 'XDSConnect|ChangeFanout' -benchtime 100x -count 2 ./controlplane
run controlplane go test -run '^$' -bench . -benchtime 5x -count 2 ./controlplane/translate
run auditstore   go test -run '^$' -bench BenchmarkAppend -benchtime 200000x ./auditstore/wal/
run auditstore   go test -run '^$' -bench BenchmarkIngestHTTP -benchtime 200000x ./auditstore/collector/
run auditstore   go test -run '^$' -bench BenchmarkIngestEvidence -benchtime 300000x -count 3 ./auditstore/collector/
run auditstore   go test -run '^$' -bench BenchmarkExportBacklog -benchtime 100000x ./auditstore/export/
run certs        go test -run '^$' -bench . -benchtime 1s -count 6 ./controlplane/certs
run policies     go test -run '^$' -bench . -benchtime 2s -count 3 ./policies
run issue18      scripts/bench-issue18.sh
echo "raw results appended to $raw/; update the tables in docs/bench/*.md and docs/BENCHMARKS.md from them"
