#!/bin/bash
# Raw fio: io_uring, O_DIRECT, 4K random reads of a file on the file system of
# the engine's cache file: the device's figure that the engine's hit path is
# measured against. Prints the IOPS (best of the JOBSxDEPTH shapes given).
# Each shape with depth > 1 runs twice: with fio's defaults (one I/O per
# io_uring_enter), and batched as the engine's read queue is (a whole
# depth's worth of SQEs per io_uring_enter, the file registered), so that
# the engine is not compared with a baseline that pays one system call per
# read. RAW_BATCHED=0 skips the batched runs.
#
# usage: bench/fio_raw.sh [JOBSxDEPTH...]
#   default: 1x32 2x32 4x16 4x32 64x1, every shape the engine's sweep has at
#   its best, and more
# Environment: RINGCACHE_BENCH_DIR (default /var/tmp), RUNTIME (seconds,
# default 10), SIZE (file size, default 1g, as the engine's hit set).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${RINGCACHE_BENCH_DIR:-/var/tmp}
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-1g}
[ $# -gt 0 ] || set -- 1x32 2x32 4x16 4x32 64x1
command -v fio >/dev/null || { echo "fio_raw.sh: fio not found (apt-get install fio)" >&2; exit 1; }

WORK=$(mktemp -d "$BENCH_DIR/ringcache-rawfio.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

best=0
for shape in "$@"; do
  jobs=${shape%x*}
  depth=${shape#*x}
  case "$jobs$depth" in ''|*[!0-9]*) echo "fio_raw.sh: shape '$shape' is not JOBSxDEPTH" >&2; exit 1;; esac
  variants=(default)
  [ "$depth" -le 1 ] || [ "${RAW_BATCHED:-1}" = 0 ] || variants+=(batched)
  for variant in "${variants[@]}"; do
    extra=()
    [ "$variant" = default ] ||
      extra=(--iodepth_batch_submit="$depth" --iodepth_batch_complete_max="$depth" --registerfiles=1)
    fio --name=raw --filename="$WORK/raw.dat" --size="$SIZE" --ioengine=io_uring --direct=1 \
      --rw=randread --bs=4k --numjobs="$jobs" --iodepth="$depth" --time_based --runtime="$RUNTIME" \
      --ramp_time=1 --group_reporting --output-format=json --output="$WORK/raw.json" \
      "${extra[@]}" >/dev/null
    read -r iops p99 _ < <(/usr/bin/python3 "$ROOT/bench/lib/fio_summary.py" "$WORK/raw.json")
    echo "raw fio io_uring O_DIRECT 4K randread ${jobs}x${depth} ($variant): $iops IOPS, p99 $p99 us" >&2
    [ "$iops" -le "$best" ] || best=$iops
  done
done
echo "$best"
