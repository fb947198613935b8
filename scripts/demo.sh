#!/usr/bin/env bash
# The main job, end to end: build the ringcache nbdkit filter, create a demo
# disk, serve it with nbdkit + ringcache in front of a deliberately slow
# origin (nbdkit's delay filter over the file plugin) on a Unix socket in a
# temporary directory, drive parallel I/O through it with fio's nbd engine
# (cold reads, warm reads, random reads, writes, a flush), and print
# throughput, hit rates and the filter's own stats. nbdkit is stopped by PID.
#
# Packages must be installed already (scripts/setup.sh does that).
# Environment knobs:
#   DEMO_SIZE=256M     size of the demo disk
#   DEMO_DELAY=2ms     delay the origin adds to every read and write
#   DEMO_KEEP=1        leave nbdkit running at the end (prints how to stop it)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/bin:$PATH"   # nbdsh needs Debian's python3

size="${DEMO_SIZE:-256M}"
delay="${DEMO_DELAY:-2ms}"
for tool in bazel nbdkit nbdsh nbdcopy fio; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
done

step() { printf '\n== %s\n' "$*"; }

step "build the filter"
demo="$(mktemp -d /tmp/ringcache-demo.XXXXXX)"
if ! bazel build --noshow_progress //nbdkit_adapter:nbdkit-ringcache-filter.so >"$demo/build.log" 2>&1; then
  grep -v linux-sandbox "$demo/build.log" >&2
  echo "demo: the filter did not build (bazel's output above)" >&2
  rm -rf "$demo"
  exit 1
fi
grep -v linux-sandbox "$demo/build.log" | tail -n 2
# A private copy: bazel-bin is a symlink that later builds may repoint.
cp bazel-bin/nbdkit_adapter/nbdkit-ringcache-filter.so "$demo/"
filter="$demo/nbdkit-ringcache-filter.so"
sock="$demo/nbd.sock"
pidfile="$demo/nbdkit.pid"
stats="$demo/ringcache.stats"
uri="nbd+unix:///?socket=$sock"

pid=""
origin_pid=""
stop_server() {   # PID
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  # The origin-only server is never kept: nothing points to it afterwards.
  if [[ -n "$origin_pid" ]]; then stop_server "$origin_pid"; fi
  if [[ -n "$pid" && -z "${DEMO_KEEP:-}" ]]; then stop_server "$pid"; fi
  if [[ -z "${DEMO_KEEP:-}" ]]; then rm -rf "$demo"; fi
}
trap cleanup EXIT

step "create a $size demo disk (nbdkit's pattern plugin: every 8 bytes hold their offset)"
nbdcopy -- [ nbdkit pattern "$size" ] "$demo/disk.img"
bytes=$(stat -c %s "$demo/disk.img")

step "start nbdkit: ringcache in front of a slow origin (delay filter, $delay per request)"
server_args=(--filter="$filter" --filter=delay file "$demo/disk.img"
             rdelay="$delay" wdelay="$delay"
             cache=writeback cache-on-read=true cache-dir="$demo")
echo "nbdkit -U $sock -P $pidfile ${server_args[*]}"
RINGCACHE_STATS_FILE="$stats" nbdkit -U "$sock" -P "$pidfile" "${server_args[@]}"
for _ in $(seq 200); do [[ -s "$pidfile" ]] && break; sleep 0.05; done
pid="$(cat "$pidfile")"
echo "nbdkit is running, PID $pid, socket $sock"

refresh_stats() { nbdsh -u "$uri" -c 'h.flush()'; }   # the filter rewrites its stats at every flush
stat_value() { sed -n "s/^$1=//p" "$stats"; }

# fio over NBD; prints "MiB/s IOPS" for the phase. Extra args: the job.
fio_phase() {
  local label="$1"; shift
  local before_hits before_misses before_skipped
  refresh_stats
  before_hits=$(stat_value hits); before_misses=$(stat_value misses)
  before_skipped=$(stat_value fills_skipped)
  fio --name=demo --ioengine=nbd --uri="$uri" --group_reporting \
      --output-format=json --output="$demo/fio.json" "$@"
  refresh_stats
  local hits=$(( $(stat_value hits) - before_hits ))
  local misses=$(( $(stat_value misses) - before_misses ))
  local skipped=$(( $(stat_value fills_skipped) - before_skipped ))
  /usr/bin/python3 - "$demo/fio.json" "$label" "$hits" "$misses" "$skipped" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
label, hits, misses, skipped = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bw = job["read"]["bw_bytes"] + job["write"]["bw_bytes"]
iops = job["read"]["iops"] + job["write"]["iops"]
errors = job["error"]
rate = "%.1f%%" % (100.0 * hits / (hits + misses)) if hits + misses else "n/a"
# Misses beyond what the background cache writer can take (32 MiB in
# flight) are served but not cached: fills_skipped.
note = ", %d misses not cached: fill writer full" % skipped if skipped else ""
print("%-34s %9.1f MiB/s %9.0f IOPS   block hits %6d misses %6d (hit rate %s%s)%s"
      % (label, bw / 2**20, iops, hits, misses, rate, note, "  ERRORS %d" % errors if errors else ""))
PY
}

jobs=4
per_job=$(( bytes / jobs ))
seq_read=(--rw=read --bs=1M --iodepth=4 --numjobs=$jobs --size=$per_job --offset_increment=$per_job)

step "parallel I/O through ringcache (fio, nbd engine, $jobs jobs)"
fio_phase "cold sequential read (all misses)" "${seq_read[@]}"
fio_phase "warm sequential read (cached)" "${seq_read[@]}"
fio_phase "warm random 4K reads, 5 s" --rw=randread --bs=4k --iodepth=16 --numjobs=$jobs \
  --size="$bytes" --time_based --runtime=5
fio_phase "random 64K writes (writeback)" --rw=randwrite --bs=64k --iodepth=8 --numjobs=$jobs \
  --size=16M --offset_increment=$per_job
# Dirty some blocks, then time one flush. The filter also rewrites its stats
# when a connection ends, so blocks_dirty is visible without flushing.
wb_before=$(stat_value writebacks)
fio --name=dirty --ioengine=nbd --uri="$uri" --rw=randwrite --bs=64k --iodepth=8 --numjobs=$jobs \
  --size=8M --offset_increment=$per_job --output=/dev/null
dirty=$(stat_value blocks_dirty)
t0=$(date +%s%N)
nbdsh -u "$uri" -c 'h.flush()'
t1=$(date +%s%N)
printf '%-34s %d dirty blocks written back (%d origin writes in all so far) in %d ms\n' \
  "flush" "$dirty" "$(stat_value origin_writes)" $(( (t1 - t0) / 1000000 ))
(( $(stat_value writebacks) - wb_before >= dirty )) || { echo "demo: flush wrote back fewer blocks than were dirty" >&2; exit 1; }

step "for comparison: the slow origin alone (no cache), random 4K reads, 5 s"
RINGCACHE_STATS_FILE= nbdkit -U "$demo/origin.sock" -P "$demo/origin.pid" --filter=delay \
  file "$demo/disk.img" rdelay="$delay" wdelay="$delay"
for _ in $(seq 200); do [[ -s "$demo/origin.pid" ]] && break; sleep 0.05; done
origin_pid="$(cat "$demo/origin.pid")"
fio --name=origin --ioengine=nbd --uri="nbd+unix:///?socket=$demo/origin.sock" --group_reporting \
  --rw=randread --bs=4k --iodepth=16 --numjobs=$jobs --size="$bytes" --time_based --runtime=5 \
  --output-format=json --output="$demo/origin.json"
stop_server "$origin_pid"
origin_pid=""
/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print("%-34s %9.1f MiB/s %9.0f IOPS" % ("origin alone, random 4K reads", j["bw_bytes"] / 2**20, j["iops"]))
' "$demo/origin.json"

step "check: the origin holds every byte after the flush"
nbdcopy "$uri" "$demo/export.img"
/usr/bin/python3 -c '
import sys
a, b = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
while True:
    x, y = a.read(1 << 20), b.read(1 << 20)
    if x != y: sys.exit("origin and export differ")
    if not x: break
print("origin == export: ok")
' "$demo/disk.img" "$demo/export.img"
rm -f "$demo/export.img"

step "the filter's stats ($stats, rewritten at every flush)"
refresh_stats
tr '\n' ' ' <"$stats"; echo
h=$(stat_value hits); m=$(stat_value misses)
echo "overall block hit rate: $(( 100 * h / (h + m) ))% ($h hits, $m misses)"

step "reuse"
if [[ -n "${DEMO_KEEP:-}" ]]; then
  cat <<EOT
nbdkit is still running (PID $pid). Try:
  nbdsh -u '$uri' -c 'print(h.pread(16, 0))'
  qemu-img info '$uri'
  fio --name=x --ioengine=nbd --uri='$uri' --rw=randread --bs=4k --runtime=5 --time_based
  cat $stats            # after a flush
Stop it with:  kill $pid && rm -rf $demo
EOT
else
  cat <<EOT
nbdkit (PID $pid) is stopped now and $demo removed. To keep it running for
your own experiments: DEMO_KEEP=1 scripts/demo.sh, or start it yourself:
  RINGCACHE_STATS_FILE=/tmp/ringcache.stats nbdkit -U /tmp/ringcache.sock -P /tmp/ringcache.pid \\
    --filter=\$PWD/bazel-bin/nbdkit_adapter/nbdkit-ringcache-filter.so --filter=delay \\
    file disk.img rdelay=$delay wdelay=$delay cache=writeback cache-on-read=true
  nbdsh -u 'nbd+unix:///?socket=/tmp/ringcache.sock' -c 'print(h.get_size())'
  kill \$(cat /tmp/ringcache.pid)
EOT
fi
