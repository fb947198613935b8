#!/bin/bash
# cache-on-read=/PATH: reads are cached only while PATH exists, toggled while
# nbdkit runs (observed in the filter's stats: a second read of a range hits
# only when the first one was cached). Plus the port of nbdkit's
# test-cache-on-read-caches.sh: with a slow origin (delay filter), the second
# read of a block and a read after a write do not pay the origin's delay.
# And fill-overflow=write: however fast a cold read runs, every block it
# misses is cached, so a second pass finds them all.
source "$(dirname "$0")/lib.sh"

make_random "$WORK/cor.img" $((8 * 1024 * 1024)) 3
toggle="$WORK/cache-reads-now"
start_nbdkit cor --filter="$FILTER" file "$WORK/cor.img" \
  cache-on-read="$toggle" cache-dir="$WORK"

TOGGLE="$toggle" STATS="$WORK/cor.stats" ORIGIN="$WORK/cor.img" nbdsh_on cor <<'PY'
import os
toggle = os.environ["TOGGLE"]
origin = open(os.environ["ORIGIN"], "rb").read()

def stats():
    h.flush()   # the filter rewrites its stats file at every flush
    with open(os.environ["STATS"]) as f:
        return {k: int(v) for k, v in (l.strip().split("=") for l in f if "=" in l)}

def read_twice(off, n):
    s0 = stats()
    for _ in range(2):
        assert h.pread(n, off) == origin[off:off + n]
    s1 = stats()
    return s1["hits"] - s0["hits"], s1["blocks_cached"] - s0["blocks_cached"]

M = 1 << 20
assert not os.path.exists(toggle)
hits, cached = read_twice(0, M)
assert hits == 0 and cached == 0, ("off", hits, cached)

open(toggle, "w").close()          # turn caching of reads on
hits, cached = read_twice(2 * M, M)
assert hits >= 16 and cached >= 16, ("on", hits, cached)   # 1M = 16 blocks of 64K

os.unlink(toggle)                  # and off again
hits, cached = read_twice(4 * M, M)
assert hits == 0 and cached == 0, ("off again", hits, cached)

# The range cached while on still hits now.
hits, cached = read_twice(2 * M, M)
assert hits >= 32, ("cached range", hits)
print("cache-on-read=/PATH toggling ok")
PY
stop_nbdkit cor

echo "== port of test-cache-on-read-caches.sh (delay filter under ringcache)"
start_nbdkit slow --filter="$FILTER" --filter=delay memory 64K \
  cache-on-read=true rdelay=1 cache-dir="$WORK"
nbdsh_on slow <<'PY'
from time import monotonic
def timed_read():
    t = monotonic()
    data = h.pread(65536, 0)
    return monotonic() - t, data
el, zb = timed_read()
assert el >= 1 and zb == bytearray(65536), el
el, zb = timed_read()
assert el < 1 and zb == bytearray(65536), ("second read was not cached", el)
buf = b"abcd" * 16384
h.pwrite(buf, 0)
el, data = timed_read()
assert el < 1 and data == buf, ("read after write was slow", el)
PY
stop_nbdkit slow

echo "== fill-overflow=write: every miss of a fast cold read is cached"
# 4K blocks: the fill writer then takes far fewer blocks per second than a
# cold nbdcopy reads, so with the default (skip) about half of them would be
# left uncached (fills_skipped).
make_random "$WORK/fo.img" $((64 * 1024 * 1024)) 5
start_nbdkit fo --filter="$FILTER" file "$WORK/fo.img" \
  cache-on-read=true fill-overflow=write cache-min-block-size=4096 cache-dir="$WORK"
# The filter rewrites its stats file (read by stat_of) at every flush.
flush_stats() { nbdsh_on fo <<<'h.flush()'; }
show_stats() {
  local k
  for k in misses hits blocks_cached fills_skipped; do printf '%s=%s ' "$k" "$(stat_of fo "$k")"; done
}
timeout 120 nbdcopy "$(uri fo)" "$WORK/fo.copy1" --requests=16 --connections=4
cmp "$WORK/fo.img" "$WORK/fo.copy1"
flush_stats
echo "after the cold copy: $(show_stats)"
[[ "$(stat_of fo misses)" == 16384 && "$(stat_of fo fills_skipped)" == 0 &&
   "$(stat_of fo blocks_cached)" == 16384 ]] ||
  fail "fill-overflow=write left misses uncached: $(show_stats)"
timeout 120 nbdcopy "$(uri fo)" "$WORK/fo.copy2" --requests=16 --connections=4
cmp "$WORK/fo.img" "$WORK/fo.copy2"
flush_stats
echo "after the second copy: $(show_stats)"
[[ "$(stat_of fo misses)" == 16384 && "$(stat_of fo hits)" == 16384 ]] ||
  fail "the second copy missed: $(show_stats)"
stop_nbdkit fo
echo PASS
