#!/bin/bash
# The cache file's life: created in $TMPDIR (default /var/tmp) or cache-dir,
# also when they are relative and nbdkit daemonises (it changes directory to
# / after the filter opened the file); never visible in the directory (it is
# unlinked or O_TMPFILE), so nothing is left after a normal exit or after
# kill -9, even in the middle of writes. The stats file is written at unload;
# one that cannot be written is reported once.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
mkdir -p "$WORK/lc/rel" "$WORK/lc/relcd"
pushd "$WORK/lc" >/dev/null

echo "== relative TMPDIR, daemonised, kill -9"
TMPDIR=rel start_nbdkit_daemon lc1 --filter="$FILTER" memory 64M
popd >/dev/null
cache_fd_of lc1 "$WORK/lc/rel" >/dev/null || fail "no cache file open under the relative TMPDIR"
[[ -z "$(ls -A "$WORK/lc/rel")" ]] || fail "cache file visible in TMPDIR: $(ls -A "$WORK/lc/rel")"
nbdsh_on lc1 <<'PY'
h.pwrite(b"q" * 1048576, 0)
assert h.pread(1048576, 0) == b"q" * 1048576
PY
# kill -9 in the middle of a stream of writes: once the cache file has grown
# past the first megabyte, while nbdcopy still writes.
cache_fd="$(cache_fd_of lc1 "$WORK/lc/rel")"
blocks0="$(stat -L -c %b "$cache_fd")"
timeout 60 nbdcopy -- [ nbdkit random 64M seed=1 ] "$(uri lc1)" &
copier=$!
for ((i = 0; i < 200; i++)); do
  (($(stat -L -c %b "$cache_fd" 2>/dev/null || echo 0) > blocks0)) && break
  sleep 0.05
done
(($(stat -L -c %b "$cache_fd") > blocks0)) || fail "nbdcopy wrote nothing into the cache in 10 s"
kill -0 "$copier" 2>/dev/null || echo "note: nbdcopy had finished before the kill"
kill -9 "$(pid_of lc1)"
wait "$copier" 2>/dev/null || true
for ((i = 0; i < 100; i++)); do kill -0 "$(pid_of lc1)" 2>/dev/null || break; sleep 0.05; done
[[ -z "$(ls -A "$WORK/lc/rel")" ]] || fail "files left after kill -9: $(ls -A "$WORK/lc/rel")"
held="$(find /proc/[0-9]*/fd -lname "$WORK/lc/rel/*" 2>/dev/null || true)"
[[ -z "$held" ]] || fail "the cache file is still open after kill -9: $held"
rm -f "$WORK/lc1.pid"

echo "== relative cache-dir, daemonised, normal exit, stats at unload"
pushd "$WORK/lc" >/dev/null
start_nbdkit_daemon lc2 --filter="$FILTER" memory 8M cache-dir=relcd cache-on-read=true
popd >/dev/null
cache_fd_of lc2 "$WORK/lc/relcd" >/dev/null || fail "no cache file open under the relative cache-dir"
nbdsh_on lc2 <<'PY'
for _ in range(3):
    assert h.pread(1048576, 0) == bytes(1048576)
PY
# The connection's end (finalize) writes the stats too: wait for that, remove
# the file, and only unload can bring it back.
for ((i = 0; i < 200; i++)); do [[ -s "$WORK/lc2.stats" ]] && break; sleep 0.05; done
[[ -s "$WORK/lc2.stats" ]] || fail "no stats file after the connection ended"
rm -f "$WORK/lc2.stats"
stop_nbdkit lc2
[[ -s "$WORK/lc2.stats" ]] || fail "no stats file written at unload"
[[ -z "$(ls -A "$WORK/lc/relcd")" ]] || fail "files left after exit: $(ls -A "$WORK/lc/relcd")"
[[ "$(stat_of lc2 hits)" -ge 32 ]] || fail "stats at unload: hits=$(stat_of lc2 hits), want >= 32"
[[ "$(stat_of lc2 misses)" -ge 16 ]] || fail "stats at unload: misses=$(stat_of lc2 misses)"

echo "== no TMPDIR: /var/tmp"
env -u TMPDIR RINGCACHE_STATS_FILE= nbdkit -f -U "$WORK/lc3.sock" -P "$WORK/lc3.pid" \
  --filter="$FILTER" memory 1M >"$WORK/lc3.log" 2>&1 &
_NBDKIT_NAMES+=(lc3)
for ((i = 0; i < 200; i++)); do [[ -s "$WORK/lc3.pid" ]] && break; sleep 0.05; done
[[ -s "$WORK/lc3.pid" ]] || fail "nbdkit lc3 did not start: $(cat "$WORK/lc3.log")"
cache_fd_of lc3 /var/tmp >/dev/null || fail "default cache directory is not /var/tmp"
stop_nbdkit lc3

echo "== a stats file that cannot be written: one error naming it, and the server serves on"
RINGCACHE_STATS_FILE="$WORK/no-such-dir/stats" nbdkit -f -U "$WORK/lc5.sock" -P "$WORK/lc5.pid" \
  --filter="$FILTER" memory 1M cache-dir="$WORK" >"$WORK/lc5.log" 2>&1 &
_NBDKIT_NAMES+=(lc5)
for ((i = 0; i < 200; i++)); do [[ -S "$WORK/lc5.sock" ]] && break; sleep 0.05; done
[[ -S "$WORK/lc5.sock" ]] || fail "nbdkit lc5 did not start: $(cat "$WORK/lc5.log")"
nbdsh_on lc5 <<'PY'
for _ in range(3):
    h.pwrite(b"s" * 4096, 0)
    h.flush()
assert h.pread(4096, 0) == b"s" * 4096
PY
stop_nbdkit lc5
n=$(grep -c "error: ringcache: RINGCACHE_STATS_FILE: .*no-such-dir" "$WORK/lc5.log" || true)
[[ "$n" == 1 ]] || fail "want one error naming the stats file, got $n: $(cat "$WORK/lc5.log")"

echo "== the default TMPDIR is honoured"
mkdir -p "$WORK/tmpdir"
TMPDIR="$WORK/tmpdir" start_nbdkit lc4 --filter="$FILTER" memory 1M
cache_fd_of lc4 "$WORK/tmpdir" >/dev/null || fail "TMPDIR not used"
stop_nbdkit lc4
[[ -z "$(ls -A "$WORK/tmpdir")" ]] || fail "files left in TMPDIR"
echo PASS
