#!/bin/bash
# Block status after unflushed writes and zeroes (writeback): ringcache
# answers extents consistently with the cache, so written ranges are data and
# zeroed ranges read as zero even though the origin has not seen them yet.
# nbdcopy and qemu-img convert (both follow block status) must copy the
# written bytes. nbdkit's cache filter passes extents straight to the plugin,
# so there the written ranges are holes and nbdcopy copies zeros: printed for
# comparison, not asserted.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
run_case() {  # name filter-args...
  local name="$1"; shift
  truncate -s $((8 * M)) "$WORK/$name.img"             # sparse: all holes
  # Data in the origin at 6M..7M, so that zeroing it is visible.
  dd if=/dev/urandom of="$WORK/$name.img" bs=$M seek=6 count=1 conv=notrunc status=none
  cp --sparse=always "$WORK/$name.img" "$WORK/$name.expected"
  start_nbdkit "$name" "$@" file "$WORK/$name.img" cache=writeback
  EXPECTED="$WORK/$name.expected" URI="$(uri "$name")" nbdsh_on "$name" <<'PY'
import os, random
M = 1 << 20
rnd = random.Random(3)
with open(os.environ["EXPECTED"], "r+b") as exp:
    for off, n in ((1 * M, 200000), (5 * M + 5, 3000), (7 * M + 4096, 65536)):
        data = rnd.randbytes(n)
        h.pwrite(data, off)
        exp.seek(off); exp.write(data)
    h.zero(M, 6 * M)                   # zero the origin's data range, unflushed
    exp.seek(6 * M); exp.write(bytes(M))
PY
  # Clients that follow block status; no flush has happened.
  timeout 60 nbdcopy "$(uri "$name")" "$WORK/$name.nbdcopy"
  timeout 60 qemu-img convert -f raw -O raw "$(uri "$name")" "$WORK/$name.qemu"
}

TMPDIR="$WORK" run_case ringcache --filter="$FILTER"
EXPECTED="$WORK/ringcache.expected" nbdsh_on ringcache <<'PY'
import os
M = 1 << 20
h2 = nbd.NBD()
h2.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h2.connect_uri(h.get_uri())
assert h2.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
extents = []
def cb(ctx, off, entries, err):
    pos = off
    for i in range(0, len(entries), 2):
        extents.append((pos, entries[i], entries[i + 1]))
        pos += entries[i]
pos = 0
while pos < h2.get_size():
    h2.block_status(h2.get_size() - pos, pos, cb)
    pos = extents[-1][0] + extents[-1][1]
def flags_at(off):
    for s, n, f in extents:
        if s <= off < s + n:
            return f
    raise AssertionError("no extent covers %d" % off)
for off in (1 * M, 1 * M + 199999, 5 * M + 5, 7 * M + 4096):
    assert flags_at(off) & nbd.STATE_HOLE == 0, ("written data reported as hole", off, extents)
    assert flags_at(off) & nbd.STATE_ZERO == 0, ("written data reported as zero", off, extents)
for off in (6 * M, 6 * M + M - 1):
    assert flags_at(off) & nbd.STATE_ZERO, ("zeroed range not reported as zero", off, extents)
print("extents:", extents)
PY
cmp "$WORK/ringcache.expected" "$WORK/ringcache.nbdcopy" || fail "nbdcopy after unflushed writes copied wrong bytes"
cmp "$WORK/ringcache.expected" "$WORK/ringcache.qemu" || fail "qemu-img convert after unflushed writes copied wrong bytes"
stop_nbdkit ringcache

run_case nbdkit-cache --filter=cache
if cmp -s "$WORK/nbdkit-cache.expected" "$WORK/nbdkit-cache.nbdcopy"; then
  echo "for comparison, nbdkit's cache filter: nbdcopy copied the right bytes"
else
  echo "for comparison, nbdkit's cache filter: nbdcopy copied wrong bytes ($(cmp -l "$WORK/nbdkit-cache.expected" "$WORK/nbdkit-cache.nbdcopy" | wc -l) differ)"
fi
stop_nbdkit nbdkit-cache
echo PASS
