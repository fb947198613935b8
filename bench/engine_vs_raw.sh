#!/bin/bash
# The engine alone, through its C++ API (bench/engine_bench.cc), against raw
# fio io_uring O_DIRECT 4K random reads on the same file system, same run.
# The engine reads 4K random hits of an O_DIRECT cache file (default shards)
# two ways: BM_QueueHit4K (a ReadQueue per thread, 16 or 32 reads in flight
# per thread, like fio's iodepth; best of 1, 2, 4 threads) and BM_Hit4K (one
# synchronous Engine::Read at a time per thread; best of 1..64 threads), each
# shape the median of 3 repetitions. The ratio is the better of the two
# against fio's best shape (with fio's defaults or batched, see fio_raw.sh).
#
# usage: bench/engine_vs_raw.sh [--figures-only]
#   --figures-only prints "RAW_IOPS ENGINE_IOPS ENGINE_THREADS ENGINE_DEPTH"
#   (for nbd_compare.sh)
# Environment: RINGCACHE_BENCH_DIR (default /var/tmp), RUNTIME (raw fio seconds,
# default 10), BUILD=0 to skip `bazel build //bench:engine_bench`,
# ENGINE_BENCH=PATH to use that binary.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export RINGCACHE_BENCH_DIR=${RINGCACHE_BENCH_DIR:-/var/tmp}
[ "${BUILD:-1}" = 0 ] || bazel build //bench:engine_bench >&2
# The optimised build (the bazel-bin symlink follows the last configuration
# built, e.g. --config=asan).
BIN=${ENGINE_BENCH:-$(bazel info bazel-bin 2>/dev/null || echo "$ROOT/bazel-bin")/bench/engine_bench}
[ -x "$BIN" ] || { echo "engine_vs_raw.sh: $BIN not built (bazel build //bench:engine_bench)" >&2; exit 1; }

raw=$("$ROOT/bench/fio_raw.sh")
json=$(mktemp "${TMPDIR:-/tmp}/engine_bench.XXXXXX.json")
trap 'rm -f "$json"' EXIT
# Both the O_DIRECT and the buffered cache file, default shards.
# Three repetitions of every shape; the best shape's median counts.
"$BIN" --benchmark_filter='^BM_(Queue)?Hit4K/shards:0/' --benchmark_repetitions=3 \
  --benchmark_out="$json" --benchmark_out_format=json >&2
best() { /usr/bin/python3 "$ROOT/bench/lib/gbench_best.py" "$json" "$1"; }
read -r engine threads depth < <(best '^BM_(Queue)?Hit4K/shards:0/direct:1/')
read -r sync sync_threads _ < <(best '^BM_Hit4K/shards:0/direct:1/')
read -r buffered buffered_threads buffered_depth < <(best '^BM_(Queue)?Hit4K/shards:0/direct:0/')
ratio=$(awk -v a="$engine" -v b="$raw" 'BEGIN { printf "%.2f", a / b }')
echo "engine 4K hits, one synchronous read per thread, O_DIRECT: $sync IOPS at $sync_threads threads" >&2
echo "engine 4K hits, buffered cache file (page cache; not comparable to O_DIRECT): $buffered IOPS at $buffered_threads threads x $buffered_depth" >&2
if [ "${1:-}" = --figures-only ]; then
  echo "$raw $engine $threads $depth"
else
  echo "raw fio io_uring O_DIRECT 4K randread: $raw IOPS"
  echo "engine 4K hits, O_DIRECT cache file:   $engine IOPS at $threads threads x $depth in flight"
  echo "ratio engine / raw fio: ${ratio}x (target >= 0.8x)"
fi
