#!/bin/bash
# Where the CPU goes in one of nbd_compare.sh's page-cache rows (warm, reclaim):
# for each server (pass-through, nbdkit's cache filter, ringcache) runs the
# row's fio job, records the whole machine with `perf record -a -g` while it
# runs, and splits the samples by call stack (bench/lib/cpu_buckets.py): fio,
# nbdkit's server, the origin plugin, the cache filter. Prints each bucket's
# share of the CPU and its CPU microseconds per request.
#
# usage: bench/cpu_share.sh warm|reclaim
#
# Environment: VARIANTS (default "passthrough nbdkit ringcache"), SECONDS_REC
# (perf's window, default 6), FREQ (sampling rate, default 999 Hz),
# RINGCACHE_FILTER, RINGCACHE_BENCH_DIR (cache files, default /var/tmp),
# BUILD=0 (do not build the filter first). Needs root (perf -a) and perf
# (Debian package linux-perf, installed here if missing).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROW=${1:-}
VARIANTS=${VARIANTS:-passthrough nbdkit ringcache}
SECONDS_REC=${SECONDS_REC:-6}
FREQ=${FREQ:-999}
BENCH_DIR=${RINGCACHE_BENCH_DIR:-/var/tmp}
NBDKIT_THREADS=16
PY=/usr/bin/python3

case "$ROW" in
  warm) ORIGIN=(pattern size=256M); CACHE_PARAMS=(cache=writeback cache-on-read=true); BS=4k ;;
  reclaim) ORIGIN=(pattern size=1G); CACHE_PARAMS=(cache=writeback cache-on-read=true cache-max-size=256M); BS=64k ;;
  *) echo "usage: bench/cpu_share.sh warm|reclaim" >&2; exit 2 ;;
esac
bash scripts/setup.sh linux-perf
perf --version >/dev/null 2>&1 || { echo "cpu_share.sh: perf does not run (linux-perf is installed)" >&2; exit 1; }

if [ "${BUILD:-1}" != 0 ] && [[ " $VARIANTS " == *" ringcache "* ]]; then
  bazel build //nbdkit_adapter:nbdkit-ringcache-filter.so
fi
FILTER=${RINGCACHE_FILTER:-$(bazel info bazel-bin 2>/dev/null || echo "$ROOT/bazel-bin")/nbdkit_adapter/nbdkit-ringcache-filter.so}

WORK=$(mktemp -d "$BENCH_DIR/ringcache-cpu.XXXXXX")
export TMPDIR=$WORK   # both cache filters put their cache file here
if [[ " $VARIANTS " == *" ringcache "* ]]; then
  cp "$FILTER" "$WORK/nbdkit-ringcache-filter.so"
  FILTER=$WORK/nbdkit-ringcache-filter.so
fi
# shellcheck source=bench/lib/nbd_server.sh
source "$ROOT/bench/lib/nbd_server.sh"
trap 'stop_all_nbdkit; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

fio_job() {
  fio --name="$1" --ioengine=nbd --uri="$(server_uri)" --group_reporting "${@:2}"
}

for v in $VARIANTS; do
  args=()
  case "$v" in
    passthrough) args+=("${ORIGIN[@]}") ;;
    nbdkit) args+=(--filter=cache "${ORIGIN[@]}" "${CACHE_PARAMS[@]}") ;;
    ringcache) args+=("--filter=$FILTER" "${ORIGIN[@]}" "${CACHE_PARAMS[@]}") ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
  start_nbdkit "$v" "${args[@]}"
  if [ "$ROW" = warm ]; then   # read once, as nbd_compare.sh's warm row does
    fio_job prefill --rw=read --bs=1m --iodepth=4 >/dev/null
  else                         # fill the cache to its limit first
    fio_job prefill --rw=randread --bs=64k --numjobs=4 --iodepth=16 --time_based --runtime=3 >/dev/null
  fi
  # The job runs 2 s before perf starts and 2 s after it stops; its IOPS over
  # the whole run stand for the window's.
  fio_job "$v" --rw=randread --bs="$BS" --numjobs=4 --iodepth=16 --time_based \
    --runtime=$((SECONDS_REC + 4)) --output-format=json --output="$WORK/$v.json" &
  fio_pid=$!
  sleep 2
  perf record -q -a -g -F "$FREQ" -o "$WORK/$v.perf" -- sleep "$SECONDS_REC" 2>/dev/null
  wait "$fio_pid"
  read -r iops p99 _ < <("$PY" "$ROOT/bench/lib/fio_summary.py" "$WORK/$v.json")
  stop_nbdkit "$v"
  echo "== $ROW, $v: $iops IOPS, p99 $p99 us"
  perf script -i "$WORK/$v.perf" 2>/dev/null |
    "$PY" "$ROOT/bench/lib/cpu_buckets.py" "$SECONDS_REC" "$FREQ" "$(awk -v i="$iops" -v s="$SECONDS_REC" 'BEGIN { printf "%d", i * s }')"
done
