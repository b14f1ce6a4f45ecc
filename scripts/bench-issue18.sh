#!/usr/bin/env bash
# The four figures of issue 18 ("filters at the speed of native code"), side
# by side in ONE run on one machine, so their ratios can be compared:
#
#   1. the dye → audit → trace chain in the gateway host, p50: native, and
#      wasm with and without per-call deadlines (tools/gatewaybench BenchmarkChain);
#   2. wasm chain, deadlines on ÷ off, interleaved in one process
#      (tools/gatewaybench BenchmarkChainPaired; the bundle's in 3);
#   3. the bundled wasm chain (filters/bundle, the module Envoy users run)
#      against the bundle of REF (default 971ec44, the tree the issue's
#      "45 µs" was measured on), both in one host, interleaved
#      (filters/trace BenchmarkBundleVersus), and the bundle's floor: the
#      same three plugins on a module that does nothing (the 18 callbacks);
#   4. the gateway with the chain (default settings: native) ÷ a bare
#      httputil.ReverseProxy, closed loop (tools/gatewaybench).
#
# It prints the raw output, then a summary table. Needs the git history of
# REF (a full clone), or MW_OLD_BUNDLE naming a bundle .wasm to compare with.
# Takes about 7 minutes on 2 idle cores.
#
#   scripts/bench-issue18.sh            # or: scripts/bench.sh issue18
#   REF=<commit> scripts/bench-issue18.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${REF:-971ec44}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make --no-print-directory filters >/dev/null
old="${MW_OLD_BUNDLE:-}"
if [[ -z "$old" ]]; then
  echo "--- building the reference bundle at $ref"
  if ! git cat-file -e "$ref^{commit}" 2>/dev/null; then
    echo "bench-issue18: commit $ref is not in this clone (shallow?); fetch it or set MW_OLD_BUNDLE" >&2
    exit 2
  fi
  mkdir "$tmp/ref"
  git archive "$ref" | tar -x -C "$tmp/ref"
  (cd "$tmp/ref" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o "$tmp/old.wasm" ./filters/bundle/wasm)
  old="$tmp/old.wasm"
fi
# The floor under the bundle: the same three plugins (root ids dye, audit,
# trace) on a module whose contexts do nothing — the 18 callbacks a request
# makes and nothing else.
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o "$tmp/noop.wasm" ./filters/internal/testguests/noop/wasm

out="$tmp/out.txt"
{
  echo "# commit $(git rev-parse --short HEAD), reference bundle: $ref, $(nproc) cores, $(go env GOVERSION)"
  echo "## 1: chain in the gateway host (native | deadline | no-deadline), 3 × 3000 requests"
  go test -run '^$' -bench 'Chain$/dye' -benchtime 3000x -count 3 ./tools/gatewaybench | grep '^Benchmark'
  echo "## 2: wasm chain (3 modules), deadlines on ÷ off, interleaved in one process, 3 × 6000 requests"
  go test -run '^$' -bench 'ChainPaired' -benchtime 6000x -count 3 ./tools/gatewaybench | grep '^Benchmark'
  echo "## 3: bundle, reference ÷ this tree, interleaved in one host, 3 × 6000 requests per mode"
  (cd filters/trace && MW_OLD_BUNDLE="$old" go test -run '^$' -bench BundleVersus -benchtime 6000x -count 3 . | grep '^Benchmark')
  echo "## 3b: the floor: a bundle of three no-op plugins ÷ this tree (old = no-op), 3 × 6000 requests per mode"
  (cd filters/trace && MW_OLD_BUNDLE="$tmp/noop.wasm" go test -run '^$' -bench 'BundleVersus/nodeadline' -benchtime 6000x -count 3 . | grep '^Benchmark' | sed 's/^BenchmarkBundleVersus/BenchmarkBundleFloor/')
  echo "## 4: gateway with the chain ÷ bare ReverseProxy (closed loop, 32 workers, median of 5 × 4 s, interleaved)"
  go run ./tools/gatewaybench -duration 4s -rounds 5 -rate 1000 -filters-dir bin/filters 2> >(grep -v 'proxy error: context canceled' >&2) | grep -E '^\| (target|bare|gateway)'
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$out"

# Summary: medians of the repeated runs.
awk '
function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return n ? a[int((n + 1) / 2)] : 0 }
function metric(name,   i) { for (i = 1; i < NF; i++) if ($(i + 1) == name) return $i; return "" }
/^BenchmarkChain\/dye\+audit\+trace\/native/      { nat[++nn] = metric("p50-µs") }
/^BenchmarkChainPaired/ { dl[++nd] = metric("on-p50-µs"); nodl[++nx] = metric("off-p50-µs"); pr[++np] = metric("on/off-p50") }
/^BenchmarkBundleVersus\/deadline/   { bdl[++nbd] = metric("new-p50-ns") / 1000 }
/^BenchmarkBundleVersus\/nodeadline/ { bnew[++nb] = metric("new-p50-ns") / 1000; bold[nb] = metric("old-p50-ns") / 1000; bsp[nb] = metric("speedup") }
/^BenchmarkBundleFloor/ { floor[++nf] = metric("old-p50-ns") / 1000; fnew[nf] = metric("new-p50-ns") / 1000 }
/^\| bare httputil.ReverseProxy/ { split($0, f, "|"); rp = f[3] + 0; rpcpu = f[5] + 0 }
/^\| gateway, no filters/ { split($0, f, "|"); plaincpu = f[5] + 0 }
/^\| gateway, dye\+audit\+trace \(default: native\)/ { split($0, f, "|"); gw = f[3] + 0; gwcpu = f[5] + 0 }
END {
  n = med(nat, nn); d = med(dl, nd); x = med(nodl, nx); r = med(pr, np)
  fl = med(floor, nf); fn = med(fnew, nf)
  bd = med(bdl, nbd); bn = med(bnew, nb); bo = med(bold, nb); s = med(bsp, nb)
  print ""
  print "| issue-18 figure | aim | measured (median of runs, this run) | met? |"
  print "|---|---|---|---|"
  printf "| chain p50 in the gateway host, native | <= 15 us | %.1f us | %s |\n", n, (n > 0 && n <= 15) ? "yes" : "no"
  printf "| wasm chain (3 modules), deadlines on / off, p50, interleaved | <= 1.2x | %.2fx (%.1f / %.1f us) | %s |\n", r, d, x, (r > 0 && r <= 1.2) ? "yes" : "no"
  printf "| wasm bundle, deadlines on / off, p50 | <= 1.2x | %.2fx (%.1f / %.1f us) | %s |\n", bd / bn, bd, bn, (bd / bn <= 1.2) ? "yes" : "no"
  printf "| wasm bundle, reference / this tree, p50 (no deadline) | >= 2x | %.2fx (%.1f / %.1f us) | %s |\n", s, bo, bn, (s >= 2) ? "yes" : "no"
  printf "| wasm bundle: its floor (three no-op plugins, 18 callbacks) / this tree, p50 | - | %.1f / %.1f us: filter work %.1f us | - |\n", fl, fn, fn - fl
  printf "| gateway with the chain (default) / bare ReverseProxy, req/s | >= 0.8x | %.2fx (%d / %d) | %s |\n", (rp ? gw / rp : 0), gw, rp, (rp && gw / rp >= 0.8) ? "yes" : "no"
  printf "| process CPU per request: bare ReverseProxy / gateway without filters / gateway with the chain | - | %.0f / %.0f / %.0f us (bare / chain: %.2fx) | - |\n", rpcpu, plaincpu, gwcpu, (gwcpu ? rpcpu / gwcpu : 0)
}' "$out"
