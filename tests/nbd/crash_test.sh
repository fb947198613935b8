#!/bin/bash
# kill -9 of nbdkit in the middle of a parallel write workload (issue 5,
# "Crashes"). 8 writers on 8 connections write whole slots of their own
# (40 KiB, not block-aligned, neighbours sharing cache blocks) with patterns
# naming (writer, slot, seq); every acknowledged write and every successful
# flush is logged (crash_writers.py). nbdkit is killed with SIGKILL while they
# run, then the origin file is checked sector by sector against the log:
#   writethrough: every acknowledged write is in the origin;
#   writeback:    every write acknowledged before the last successful flush
#                 was issued is there (or a later write of the same slot);
# never a torn, foreign or invented sector. No cache file may be left: the
# cache directory is empty and no process holds a deleted file from it.
#   RINGCACHE_CRASH_ROUNDS=N   rounds per case (default 1; RINGCACHE_LONG=1: 10)
source "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
WRITERS="$TESTS_DIR/crash_writers.py"
rounds="${RINGCACHE_CRASH_ROUNDS:-}"
[[ -n "$rounds" ]] || { [[ "${RINGCACHE_LONG:-}" == 1 ]] && rounds=10 || rounds=1; }

# Lines of the log that start with $2.
count_lines() {
  local n
  n="$(grep -c "^$2 " "$1" 2>/dev/null)" || true
  echo "${n:-0}"
}

# Waits (up to 10 s) until the log has at least $2 acked writes and, in
# writeback, $3 successful flushes.
wait_for_progress() {
  local log="$1" writes="$2" flushes="$3" i
  for ((i = 0; i < 200; i++)); do
    if (($(count_lines "$log" W) >= writes && $(count_lines "$log" F) >= flushes)); then
      return 0
    fi
    sleep 0.05
  done
  fail "no progress: $(count_lines "$log" W) writes, $(count_lines "$log" F) flushes in 10 s"
}

# No process may hold a (deleted) file of the cache directory $1.
check_no_cache_file() {
  local dir="$1" held
  [[ -z "$(ls -A "$dir")" ]] || fail "left in the cache directory: $(ls -A "$dir")"
  held="$(find /proc/[0-9]*/fd -lname "$dir/*" 2>/dev/null || true)"
  [[ -z "$held" ]] || fail "cache files still held open: $held"
}

crashes=0
crash_round() {   # name mode [extra filter params...]
  local name="$1" mode="$2"
  shift 2
  local origin="$WORK/$name.img" log="$WORK/$name.wlog" cache="$WORK/cache-$name"
  rm -rf "$cache" "$log"
  mkdir -p "$cache"
  $PY "$WRITERS" init "$origin"
  start_nbdkit "$name" --filter="$FILTER" file "$origin" cache="$mode" cache-dir="$cache" "$@"
  local pid
  pid="$(pid_of "$name")"
  cache_fd_of "$name" "$cache" >/dev/null || fail "$name: no cache file open under $cache"
  [[ -z "$(ls -A "$cache")" ]] || fail "$name: cache file visible: $(ls -A "$cache")"

  # The writers would go on for 50 s: the kill below must cut every one of
  # them off in the middle of its stream.
  timeout 60 $PY "$WRITERS" write "$(uri "$name")" "$log" "$mode" 50 >"$WORK/$name.wout" &
  local client=$!
  local flushes=0
  [[ "$mode" == writeback ]] && flushes=3
  wait_for_progress "$log" 60 "$flushes"
  # Let it run a little longer, at a point that varies between rounds.
  sleep "0.$((RANDOM % 5 + 1))"
  kill -9 "$pid"
  local killed_at_writes
  killed_at_writes="$(count_lines "$log" W)"
  wait "$client" || fail "$name: the writer client failed: $(cat "$WORK/$name.wout")"
  cat "$WORK/$name.wout"
  grep -q "ended by: server gone$" "$WORK/$name.wout" ||
    fail "$name: the writers were not all cut off by the kill: $(cat "$WORK/$name.wout")"
  rm -f "$WORK/$name.pid"
  # The process is gone once waitpid reaped it; nbdkit is not our child, so
  # poll.
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && fail "$name: nbdkit survived SIGKILL"
  echo "$name: killed nbdkit after $killed_at_writes acknowledged writes"
  $PY "$WRITERS" check "$origin" "$log" "$mode" || fail "$name: data lost or corrupted"
  check_no_cache_file "$cache"
  crashes=$((crashes + 1))
  if ((crashes == 1)); then
    # The checker can fail: one sector of an acknowledged write rolled back
    # to its initial content must be caught.
    cp "$origin" "$WORK/corrupt.img"
    $PY - "$WORK/corrupt.img" "$WRITERS" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cw", sys.argv[2])
cw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cw)
with open(sys.argv[1], "r+b") as f:
    f.seek(cw.slot_offset(0, 0) + 3 * cw.SECTOR)
    f.write(cw.sector_bytes(0, 0, 0, 3))
PY
    if $PY "$WRITERS" check "$WORK/corrupt.img" "$log" "$mode" >/dev/null; then
      fail "the checker accepted an origin with a rolled-back sector"
    fi
  fi
}

for ((round = 1; round <= rounds; round++)); do
  echo "== round $round of $rounds"
  crash_round wt writethrough
  crash_round wb writeback
  # A cache smaller than the data (2 MiB for 4.1 MiB of slots): reclaim writes
  # dirty blocks back while the writers run.
  crash_round wbsmall writeback cache-max-size=2M cache-min-block-size=64K
  crash_round wtsmall writethrough cache-max-size=1M
done
echo "crashes survived: $crashes, every acknowledged (writethrough) or flushed (writeback) write intact"
echo PASS
