#!/bin/bash
# A small cache in front of a huge disk: does reclaim cost follow the cache's
# size or the disk's? The same write-back job runs against nbdkit's cache
# filter and ringcache, over a small disk and a huge one, with the same
# cache-max-size; only the disk's size changes between the two.
#
# usage: bench/huge_disk.sh
#
# Job: 64K random writes, 4 jobs x depth 16, over the first 256 MiB of the
# disk (fio --norandommap), `cache=writeback cache-max-size=64M`, nbdkit's
# memory plugin as the origin. The cache holds a quarter of what is written,
# so every request past the first second needs reclaim (dirty victims are
# written back by requests, one batch each).
#
# Environment:
#   SIZES                  disk sizes (default "1G 1T")
#   RUNTIME                seconds per job (default 8)
#   RINGCACHE_FILTER       nbdkit-ringcache-filter.so (default: the -c opt build's)
#   BUILD=0                do not run bazel build first
#   RINGCACHE_BENCH_DIR    where the cache files live (default /var/tmp)
#
# Prints one line per server and size: IOPS, fio's p99 and maximum
# completion latency, and for ringcache its stats (evictions, and the
# slowest write as the filter timed it).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SIZES=${SIZES:-1G 1T}
RUNTIME=${RUNTIME:-8}
BENCH_DIR=${RINGCACHE_BENCH_DIR:-/var/tmp}
NBDKIT_THREADS=16
PY=/usr/bin/python3
for tool in nbdkit nbdinfo fio "$PY"; do
  command -v "$tool" >/dev/null ||
    { echo "huge_disk.sh: '$tool' not found; run scripts/setup.sh" >&2; exit 1; }
done
case "$RUNTIME" in ''|*[!0-9]*|0) echo "huge_disk.sh: RUNTIME=$RUNTIME is not a positive whole number" >&2; exit 1;; esac

if [ "${BUILD:-1}" != 0 ]; then bazel build -c opt //nbdkit_adapter:nbdkit-ringcache-filter.so; fi
BIN_DIR=$(bazel info -c opt bazel-bin 2>/dev/null || echo "$ROOT/bazel-bin")
FILTER=${RINGCACHE_FILTER:-$BIN_DIR/nbdkit_adapter/nbdkit-ringcache-filter.so}
[ -f "$FILTER" ] || { echo "huge_disk.sh: ringcache filter $FILTER not found" >&2; exit 1; }

WORK=$(mktemp -d "$BENCH_DIR/ringcache-huge.XXXXXX")
export TMPDIR=$WORK   # both filters put their cache file here
cp "$FILTER" "$WORK/"
FILTER=$WORK/$(basename "$FILTER")
# shellcheck source=bench/lib/nbd_server.sh
source "$ROOT/bench/lib/nbd_server.sh"
cleanup() {
  stop_all_nbdkit
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf '%-10s %-6s %8s %10s %10s  %s\n' server disk IOPS "p99 ms" "max ms" "ringcache stats"
for size in $SIZES; do
  for v in nbdkit ringcache; do
    stats=$WORK/$v-$size.stats
    if [ "$v" = nbdkit ]; then filter=cache; else filter=$FILTER; fi
    RINGCACHE_STATS_FILE=$stats start_nbdkit "$v" "--filter=$filter" memory "size=$size" \
      cache=writeback cache-max-size=64M
    out=$WORK/$v-$size.json
    fio --name=huge --ioengine=nbd --uri="$(server_uri)" --rw=randwrite --bs=64k --size=256m \
      --numjobs=4 --iodepth=16 --norandommap --group_reporting --time_based \
      --runtime="$RUNTIME" --ramp_time=1 --output-format=json --output="$out" >/dev/null
    stop_nbdkit   # ringcache writes its stats file as nbdkit unloads it
    line=$("$PY" - "$out" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print("%8.0f %10.1f %10.1f" % (w["iops"], w["clat_ns"]["percentile"]["99.000000"] / 1e6,
                               w["clat_ns"]["max"] / 1e6))
EOF
)
    extra=""
    if [ "$v" = ringcache ] && [ -s "$stats" ]; then
      extra="evictions=$(stat_of "$stats" evictions) write_lat_max_us=$(stat_of "$stats" write_lat_max_us)"
    fi
    printf '%-10s %-6s %s  %s\n' "$v" "$size" "$line" "$extra"
  done
done
