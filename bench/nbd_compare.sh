#!/bin/bash
# Side-by-side benchmark: nbdkit's cache filter vs the ringcache filter, same
# origin, same parameters, same fio jobs (ioengine=nbd over a Unix socket),
# plus the pass-through figures (no cache at all) and, unless SKIP_ENGINE=1,
# the engine alone (Google Benchmark) vs raw fio io_uring O_DIRECT.
#
# usage: bench/nbd_compare.sh [CSV]        (default bench/results/nbd_compare-DATE.csv)
#
# Environment:
#   QUICK=1                ~3 s per job instead of 10 s (RUNTIME=N overrides both)
#   ROUNDS=N               rounds of the warm and reclaim rows (default 3): all
#                          variants run side by side, each round runs every
#                          variant once (rotating the order), for ROUND_RUNTIME
#                          s (default RUNTIME/2, at least 3); the medians count
#   RINGCACHE_BENCH_DIR    where cache files and the raw fio file live (default /var/tmp)
#   VARIANTS               subset of "passthrough nbdkit ringcache" (default: all three)
#   ROWS                   subset of "cold flush writethrough warm reclaim" (default: all)
#   DELAY                  origin latency of the slow origin (default 2ms)
#   ORIGIN_DIR             where the writable origins' files live (default /dev/shm)
#   RINGCACHE_PARAMS       extra parameters for the ringcache filter only (e.g.
#                          "direct-io=true"), appended to the shared ones
#   BUILD=0                do not run bazel build first
#   QUIET_WAIT=N           wait up to N s (default 120) for the load average to
#                          fall below the CPU count before starting
#   SKIP_ENGINE=1          skip the engine vs raw fio comparison
#   RINGCACHE_FILTER       path of nbdkit-ringcache-filter.so
#                          (default: the -c opt build's, from `bazel info bazel-bin`)
#
# Writes the CSV, a PNG bar chart next to it (same name, .png) and a log of
# every command run (.log). Kills what it starts, by PID, on any exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then RUNTIME=${RUNTIME:-3}; else RUNTIME=${RUNTIME:-10}; fi
ROUNDS=${ROUNDS:-3}
ROUND_RUNTIME=${ROUND_RUNTIME:-$(( RUNTIME / 2 > 3 ? RUNTIME / 2 : 3 ))}
BENCH_DIR=${RINGCACHE_BENCH_DIR:-/var/tmp}
VARIANTS=${VARIANTS:-passthrough nbdkit ringcache}
ROWS=${ROWS:-cold flush writethrough warm reclaim}
DELAY=${DELAY:-2ms}
ORIGIN_DIR=${ORIGIN_DIR:-/dev/shm}
NBDKIT_THREADS=16   # nbdkit's default -t, stated so both servers surely match
CSV=${1:-$ROOT/bench/results/nbd_compare-$(date +%Y%m%d-%H%M%S).csv}
PNG=${CSV%.csv}.png
LOG=${CSV%.csv}.log
PY=/usr/bin/python3   # Debian's python3, which has python3-libnbd

for tool in nbdkit nbdinfo fio gnuplot "$PY"; do
  command -v "$tool" >/dev/null ||
    { echo "nbd_compare.sh: '$tool' not found; run scripts/setup.sh (Debian packages nbdkit libnbd-bin fio gnuplot-nox python3-libnbd)" >&2; exit 1; }
done
[ -d "$BENCH_DIR" ] && [ -w "$BENCH_DIR" ] ||
  { echo "nbd_compare.sh: RINGCACHE_BENCH_DIR=$BENCH_DIR is not a writable directory" >&2; exit 1; }
[ -d "$ORIGIN_DIR" ] && [ -w "$ORIGIN_DIR" ] ||
  { echo "nbd_compare.sh: ORIGIN_DIR=$ORIGIN_DIR is not a writable directory" >&2; exit 1; }
for n in RUNTIME ROUND_RUNTIME ROUNDS; do
  case "${!n}" in ''|*[!0-9]*|0) echo "nbd_compare.sh: $n=${!n} is not a positive whole number" >&2; exit 1;; esac
done

if [ "${BUILD:-1}" != 0 ]; then
  targets=()
  [[ " $VARIANTS " == *" ringcache "* ]] && targets+=(//nbdkit_adapter:nbdkit-ringcache-filter.so)
  [ "${SKIP_ENGINE:-0}" = 1 ] || targets+=(//bench:engine_bench)
  [ ${#targets[@]} -eq 0 ] || bazel build "${targets[@]}"
fi
# The optimised build's output tree: the bazel-bin symlink follows whatever
# configuration (asan, tsan...) was built last, possibly by someone else.
BIN_DIR=$(bazel info bazel-bin 2>/dev/null || echo "$ROOT/bazel-bin")
FILTER=${RINGCACHE_FILTER:-$BIN_DIR/nbdkit_adapter/nbdkit-ringcache-filter.so}
if [[ " $VARIANTS " == *" ringcache "* ]] && [ ! -f "$FILTER" ]; then
  echo "nbd_compare.sh: ringcache filter $FILTER not found (build it, or set VARIANTS=\"passthrough nbdkit\")" >&2
  exit 1
fi

mkdir -p "$(dirname "$CSV")"
WORK=$(mktemp -d "$BENCH_DIR/ringcache-bench.XXXXXX")
export TMPDIR=$WORK   # both cache filters put their cache file here
# Private copies, so that a rebuild during the run cannot change them.
mkdir "$WORK/bin"
if [[ " $VARIANTS " == *" ringcache "* ]]; then
  cp "$FILTER" "$WORK/bin/"
  FILTER=$WORK/bin/$(basename "$FILTER")
fi
ENGINE_BENCH=$BIN_DIR/bench/engine_bench
if [ "${SKIP_ENGINE:-0}" != 1 ]; then
  [ -x "$ENGINE_BENCH" ] || { echo "nbd_compare.sh: $ENGINE_BENCH not built (bazel build //bench:engine_bench)" >&2; exit 1; }
  cp "$ENGINE_BENCH" "$WORK/bin/"
  ENGINE_BENCH=$WORK/bin/engine_bench
fi
# shellcheck source=bench/lib/nbd_server.sh
source "$ROOT/bench/lib/nbd_server.sh"
cleanup() {
  stop_all_nbdkit
  remove_origins
  rm -rf "$WORK"
}
ORIGIN_FILES=()   # before the trap: its cleanup reads it
trap cleanup EXIT
trap 'exit 130' INT TERM
: >"$LOG"
# This machine is noisy: give the load of whatever ran before (builds, tests)
# up to QUIET_WAIT seconds to settle below one runnable task per CPU.
waited=0
while [ "$waited" -lt "${QUIET_WAIT:-120}" ] &&
      awk -v n="$(nproc)" '{ exit !($1 >= n) }' /proc/loadavg; do
  [ "$waited" -gt 0 ] || echo "waiting up to ${QUIET_WAIT:-120} s for the load average ($(cut -d' ' -f1 /proc/loadavg)) to fall below $(nproc) ..." >&2
  sleep 5
  waited=$((waited + 5))
done
echo "$(date +%T) start; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); nbdkit $(nbdkit --version | cut -d' ' -f2); fio $(fio --version)" >>"$LOG"

# Writable origin: nbdkit's file plugin over a file whose pages exist before
# the run (tmpfs, fallocated). The memory plugin would allocate a fresh page
# on every first write, and on this VM a first touch of anonymous memory
# costs ~30 us per 4K page: the rows would measure the VM, not the caches.
make_origin() {
  local name=$1 size=$2
  ORIGIN_FILE=$(mktemp "$ORIGIN_DIR/ringcache-origin-$name.XXXXXX")
  ORIGIN_FILES+=("$ORIGIN_FILE")
  fallocate -l "$size" "$ORIGIN_FILE"
}
remove_origins() {
  [ ${#ORIGIN_FILES[@]} -eq 0 ] || rm -f "${ORIGIN_FILES[@]}"
  ORIGIN_FILES=()
}

log() { echo "$(date +%T) $*" >>"$LOG"; }

# server_args VARIANT "CACHE-PARAMS" "DELAY-PARAMS" PLUGIN PLUGIN-PARAMS...
# Sets SERVER_ARGS to the nbdkit arguments for VARIANT.
server_args() {
  local variant=$1 cache_params=$2 delay_params=$3
  shift 3
  SERVER_ARGS=()
  case "$variant" in
    passthrough) ;;
    nbdkit) SERVER_ARGS+=(--filter=cache) ;;
    ringcache) SERVER_ARGS+=("--filter=$FILTER") ;;
    *) echo "unknown variant $variant" >&2; return 1 ;;
  esac
  [ -z "$delay_params" ] || SERVER_ARGS+=(--filter=delay)
  SERVER_ARGS+=("$@")
  # shellcheck disable=SC2206
  [ -z "$delay_params" ] || SERVER_ARGS+=($delay_params)
  # shellcheck disable=SC2206
  [ "$variant" = passthrough ] || SERVER_ARGS+=($cache_params)
  # shellcheck disable=SC2206
  [ "$variant" != ringcache ] || SERVER_ARGS+=(${RINGCACHE_PARAMS:-})
}

# start_variant VARIANT "CACHE-PARAMS" "DELAY-PARAMS" PLUGIN PLUGIN-PARAMS...
# Starts VARIANT's server (socket VARIANT.sock) and makes it current.
start_variant() {
  local variant=$1
  shift
  server_args "$variant" "$@"
  log "nbdkit -f -t $NBDKIT_THREADS -U SOCK ${SERVER_ARGS[*]}"
  start_nbdkit "$variant" "${SERVER_ARGS[@]}"
}

# run_fio TAG fio-args...: runs fio against the current server; prints
# "iops p99_us mean_us".
run_fio() {
  local tag=$1
  shift
  local out="$WORK/$tag.json"
  log "fio --name=$tag --ioengine=nbd --uri=URI --group_reporting $*"
  if ! fio --name="$tag" --ioengine=nbd --uri="$(server_uri)" --group_reporting \
      --output-format=json --output="$out" "$@" >"$WORK/$tag.fio.log" 2>&1; then
    echo "fio $tag failed:" >&2
    cat "$WORK/$tag.fio.log" "$out" >&2 2>/dev/null || true
    return 1
  fi
  "$PY" "$ROOT/bench/lib/fio_summary.py" "$out"
}

declare -A R   # R[row.variant.metric] = figure
TIMED=(--time_based --runtime="$RUNTIME" --ramp_time=1)

row_cold() {
  local v s key stats="$WORK/cold-ringcache.stats"
  for v in $VARIANTS; do
    # ringcache's stats (written as nbdkit unloads the filter) tell how many
    # of its misses it cached; nbdkit's filter caches every block it reads.
    [ "$v" != ringcache ] || export RINGCACHE_STATS_FILE=$stats
    start_variant "$v" "cache=writeback cache-on-read=true" "rdelay=$DELAY wdelay=$DELAY" pattern size=64G
    unset RINGCACHE_STATS_FILE
    # 8 jobs, each on its own 8 GiB region, fio's random map: every read misses.
    s=$(run_fio "cold-$v" --rw=randread --bs=64k --numjobs=8 --iodepth=8 \
      --size=8g --offset_increment=8g "${TIMED[@]}")
    R[cold.$v.iops]=${s%% *}
    stop_nbdkit
    if [ "$v" = ringcache ] && [ -s "$stats" ]; then
      log "ringcache stats: $(cat "$stats")"
      for key in misses blocks_cached fills_skipped; do
        R[cold.ringcache.$key]=$(stat_of "$stats" "$key")
      done
    fi
  done
}

row_flush() {
  local v s
  for v in $VARIANTS; do
    [ "$v" != passthrough ] || continue
    make_origin flush 256M
    start_variant "$v" "cache=writeback cache-on-read=true" "wdelay=$DELAY" file "$ORIGIN_FILE"
    # 16,384 4K random writes (fio's random map: no offset twice) over 256 MiB
    # dirty ~4,050 of the 4,096 64K blocks; then one timed flush.
    s=$(run_fio "flush-writes-$v" --rw=randwrite --bs=4k --iodepth=16 \
      --numjobs=1 --io_size=64m --write_iolog="$WORK/flush-$v.iolog")
    R[flush.$v.write_iops]=${s%% *}
    R[flush.$v.dirty_64k_blocks]=$("$PY" "$ROOT/bench/lib/count_blocks.py" "$WORK/flush-$v.iolog" 65536)
    log "time_flush.py URI   (one NBD_CMD_FLUSH)"
    R[flush.$v.seconds]=$("$PY" "$ROOT/bench/lib/time_flush.py" "$(server_uri)")
    stop_nbdkit
    remove_origins
  done
}

row_writethrough() {
  local v s
  for v in $VARIANTS; do
    make_origin writethrough 1G
    start_variant "$v" "cache=writethrough cache-on-read=true" "rdelay=$DELAY wdelay=$DELAY" file "$ORIGIN_FILE"
    s=$(run_fio "writethrough-$v" --rw=randwrite --bs=4k --numjobs=4 --iodepth=16 "${TIMED[@]}")
    R[writethrough.$v.iops]=${s%% *}
    stop_nbdkit
    remove_origins
  done
}

median() {
  printf '%s\n' "$@" | sort -g |
    awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# run_rounds ROW fio-args...: the variants' servers are all running; runs
# ROUNDS rounds, each running the fio job once against every variant, the
# order rotated by one per round so that no variant always goes first or
# follows the same neighbour, and stores the medians of IOPS and p99 in
# R[ROW.VARIANT.iops] and R[ROW.VARIANT.p99_us]. This VM's speed drifts by
# tens of percent within a minute; interleaving exposes every variant to the
# same drift, and the median drops the round that a stall hit.
run_rounds() {
  local row=$1
  shift
  local -a order=($VARIANTS)
  local -A iops=() p99=()
  local r i v s one_iops one_p99
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${!order[@]}"; do
      v=${order[$(( (i + r - 1) % ${#order[@]} ))]}
      use_nbdkit "$v"
      s=$(run_fio "$row-$v-round$r" "$@" --time_based --runtime="$ROUND_RUNTIME" --ramp_time=1)
      read -r one_iops one_p99 _ <<<"$s"
      log "  round $r $v: $one_iops IOPS, p99 $one_p99 us"
      iops[$v]+=" $one_iops"
      p99[$v]+=" $one_p99"
    done
  done
  for v in "${order[@]}"; do
    # shellcheck disable=SC2086
    R[$row.$v.iops]=$(median ${iops[$v]})
    # shellcheck disable=SC2086
    R[$row.$v.p99_us]=$(median ${p99[$v]})
    log "$row $v: median of$(printf ' %s' ${iops[$v]}) IOPS = ${R[$row.$v.iops]}; p99 median ${R[$row.$v.p99_us]} us"
  done
}

row_warm() {
  local v stats="$WORK/warm-ringcache.stats" misses
  for v in $VARIANTS; do
    # ringcache's stats tell whether its rounds were all hits: a prefill
    # fill skipped while its writer was full would be a miss later.
    [ "$v" != ringcache ] || export RINGCACHE_STATS_FILE=$stats
    start_variant "$v" "cache=writeback cache-on-read=true" "" pattern size=256M
    unset RINGCACHE_STATS_FILE
    run_fio "warm-prefill-$v" --rw=read --bs=1m --iodepth=4 --numjobs=1 >/dev/null
  done
  # The prefills left both caches' files (512 MiB) dirty in the page cache;
  # the kernel would write them out about 30 s later, in the middle of the
  # rounds. Write them out now, so the rounds measure hits, not writeback.
  log "sync   (the prefills' dirty cache-file pages)"
  sync
  run_rounds warm --rw=randread --bs=4k --numjobs=4 --iodepth=16
  stop_all_nbdkit
  if [ -s "$stats" ]; then
    misses=$(stat_of "$stats" misses)
    log "ringcache stats after the warm row: $(cat "$stats")"
    log "ringcache warm row: $((misses - 4096)) block misses beyond the prefill's 4096"
  fi
}

row_reclaim() {
  local v
  for v in $VARIANTS; do
    start_variant "$v" "cache=writeback cache-on-read=true cache-max-size=256M" "" pattern size=1G
  done
  run_rounds reclaim --rw=randread --bs=64k --numjobs=4 --iodepth=16
  stop_all_nbdkit
}

for row in $ROWS; do
  case "$row" in
    cold|flush|writethrough|warm|reclaim) echo "running $row ..." >&2; "row_$row" ;;
    *) echo "nbd_compare.sh: unknown row '$row' (rows: cold flush writethrough warm reclaim)" >&2; exit 1 ;;
  esac
done

if [ "${SKIP_ENGINE:-0}" != 1 ]; then
  echo "running engine vs raw fio ..." >&2
  log "RUNTIME=$RUNTIME bench/engine_vs_raw.sh"
  s=$(BUILD=0 ENGINE_BENCH=$ENGINE_BENCH RUNTIME=$RUNTIME RINGCACHE_BENCH_DIR=$BENCH_DIR "$ROOT/bench/engine_vs_raw.sh" --figures-only \
      2>>"$LOG") || { echo "engine_vs_raw.sh failed; see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; }
  read -r raw engine threads depth <<<"$s"
  R[engine.raw.iops]=$raw
  R[engine.ringcache.iops]=$engine
  R[engine.ringcache.threads]=$threads
  R[engine.ringcache.depth]=$depth
fi

echo "$(date +%T) end; load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOG"

# Reporting: one line per job, the CSV and the plot.
"$PY" "$ROOT/bench/lib/report.py" "$CSV" "$RUNTIME" "$DELAY" < <(
  for k in "${!R[@]}"; do echo "$k ${R[$k]}"; done)
gnuplot -e "csv='$CSV'; png='$PNG'" "$ROOT/bench/lib/plot.gp"
echo "CSV:  $CSV"
echo "plot: $PNG"
echo "log:  $LOG"
