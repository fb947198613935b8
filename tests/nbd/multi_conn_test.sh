#!/bin/bash
# Multi-conn: data written on connection A is flushed to the origin by a flush
# on connection B (writeback: every dirty block, whoever wrote it;
# writethrough: already there), and every connection sees every other
# connection's writes at once (one cache for all). unsafe: flush promises
# nothing, but the connections stay coherent. Then parallel connections:
# nbdcopy (4 connections, many requests in flight) writes 32 MiB through
# ringcache and reads it back.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
for mode in writeback writethrough unsafe; do
  name="mc-$mode"
  make_random "$WORK/$name.img" $((8 * M)) 4
  start_nbdkit "$name" --filter="$FILTER" file "$WORK/$name.img" \
    cache="$mode" cache-dir="$WORK"
  MODE="$mode" ORIGIN="$WORK/$name.img" nbdsh_on "$name" <<'PY'
import os, random
mode, origin = os.environ["MODE"], os.environ["ORIGIN"]
a = h
b = nbd.NBD()
b.connect_uri(a.get_uri())
assert a.can_multi_conn() and b.can_multi_conn(), "file plugin + ringcache: multi-conn expected"
rnd = random.Random(1)
data = rnd.randbytes(300000)
a.pwrite(data, 1234567)
assert b.pread(len(data), 1234567) == data, "connection B does not see A's write"
b.flush()
with open(origin, "rb") as f:
    f.seek(1234567)
    in_origin = f.read(len(data)) == data
if mode != "unsafe":
    assert in_origin, "%s: flush on B did not put A's write in the origin" % mode
print(mode, "A's data in the origin after B's flush:", in_origin)
b.shutdown()
PY
  stop_nbdkit "$name"
done

echo "== parallel connections (nbdcopy, writeback)"
make_random "$WORK/src.img" $((32 * M)) 5
truncate -s $((32 * M)) "$WORK/par.img"
start_nbdkit par --filter="$FILTER" file "$WORK/par.img" cache=writeback \
  cache-on-read=true cache-dir="$WORK"
timeout 120 nbdcopy --connections=4 --requests=16 "$WORK/src.img" "$(uri par)"
timeout 120 nbdcopy --connections=4 --requests=16 "$(uri par)" "$WORK/back.img"
cmp "$WORK/src.img" "$WORK/back.img" || fail "parallel copy through ringcache changed the data"
nbdsh_on par <<<'h.flush()'
cmp "$WORK/src.img" "$WORK/par.img" || fail "origin differs after parallel writes and flush"
stop_nbdkit par
echo PASS
