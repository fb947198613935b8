#!/bin/bash
# NBD_CMD_CACHE (nbdsh h.cache): the covered blocks are brought into the
# cache, also with cache-on-read off, so that the reads that follow hit
# (stats: hits up, misses unchanged) and do not pay the slow origin's delay.
# Unaligned cache requests cover whole blocks. The stats file's latency keys
# count each request under its op, and only the requests that went to the
# slow origin show its delay.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
make_random "$WORK/cc.img" $((8 * M)) 9
start_nbdkit cc --filter="$FILTER" --filter=delay file "$WORK/cc.img" \
  rdelay=200ms cache-on-read=false cache-dir="$WORK"
ORIGIN="$WORK/cc.img" STATS="$WORK/cc.stats" nbdsh_on cc <<'PY'
import os, time
M = 1 << 20
origin = open(os.environ["ORIGIN"], "rb").read()
def stats():
    h.flush()
    with open(os.environ["STATS"]) as f:
        return {k: int(v) for k, v in (l.strip().split("=") for l in f if "=" in l)}
assert h.can_cache()

h.cache(M, M)
s0 = stats()
t = time.monotonic()
for off in range(M, 2 * M, 65536):
    assert h.pread(65536, off) == origin[off:off + 65536]
elapsed = time.monotonic() - t
s1 = stats()
assert s1["hits"] - s0["hits"] == 16, ("hits", s0, s1)
assert s1["misses"] == s0["misses"], ("misses", s0, s1)
# Through the origin they would take 16 x 0.2 s; the bound leaves room for a
# loaded machine (the latency maximum below is the sharp check).
assert elapsed < 1.6, "16 cached reads took %.3f s (origin delay is 0.2 s per read)" % elapsed
assert s1["read_lat_count"] == 16, s1
assert s1["read_lat_max_us"] < 200000, ("a cached read paid the origin's delay", s1)

# Unaligned: 1000 bytes at 3M+100 cache the whole 64K block around them.
h.cache(1000, 3 * M + 100)
s0 = stats()
assert h.pread(65536, 3 * M) == origin[3 * M:3 * M + 65536]
s1 = stats()
assert s1["hits"] - s0["hits"] == 1 and s1["misses"] == s0["misses"], (s0, s1)

# Without the cache command, cache-on-read=false: reads miss every time.
s0 = stats()
for _ in range(2):
    assert h.pread(65536, 5 * M) == origin[5 * M:5 * M + 65536]
s1 = stats()
assert s1["hits"] == s0["hits"] and s1["misses"] - s0["misses"] == 2, (s0, s1)

# Latency keys: every request counted under its op (the 7 flushes are
# stats()'s own), every op present; the cache commands and the misses paid
# the origin's 0.2 s.
s = stats()
want = {"read": 16 + 1 + 2, "cache": 2, "flush": 7, "write": 0, "zero": 0, "trim": 0}
for op, n in want.items():
    assert s[op + "_lat_count"] == n, (op, n, s)
    assert s[op + "_lat_p50_us"] <= s[op + "_lat_p99_us"] <= s[op + "_lat_max_us"], (op, s)
assert s["cache_lat_max_us"] >= 190000, s
assert s["read_lat_max_us"] >= 190000, s
print("NBD_CMD_CACHE ok; read latency p50 <= %d us, p99 <= %d us, max %d us" %
      (s["read_lat_p50_us"], s["read_lat_p99_us"], s["read_lat_max_us"]))
PY
stop_nbdkit cc
echo PASS
