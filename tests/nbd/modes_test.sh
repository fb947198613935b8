#!/bin/bash
# Every cache mode x cache-on-read on/off, through a real nbdkit over the file
# plugin: aligned, unaligned and tail writes and reads, zeroes with and
# without may-trim, a refused fast zero, a FUA write, flush. A model of the
# disk is kept in Python; every read is checked against it and the origin
# file is checked against it: untouched before flush in writeback mode, equal
# at all times in writethrough mode, equal after flush in both.
# Also the ports of nbdkit's test-cache-block-size.sh and test-cache-on-read.sh.
source "$(dirname "$0")/lib.sh"

size=$((4 * 1024 * 1024 + 12345))   # not a multiple of the block size

for mode in writeback writethrough unsafe; do
  for cor in true false; do
    name="$mode-cor-$cor"
    echo "== $name"
    make_random "$WORK/$name.img" "$size" 7
    start_nbdkit "$name" --filter="$FILTER" file "$WORK/$name.img" \
      cache="$mode" cache-on-read="$cor" cache-dir="$WORK"
    MODE="$mode" COR="$cor" ORIGIN="$WORK/$name.img" STATS="$WORK/$name.stats" \
      nbdsh_on "$name" <<'PY'
import errno, os, random
mode, cor, origin = os.environ["MODE"], os.environ["COR"] == "true", os.environ["ORIGIN"]
size = h.get_size()
model = bytearray(open(origin, "rb").read())
initial = bytes(model)
assert size == len(model), (size, len(model))
rnd = random.Random(42)

def origin_bytes():
    with open(origin, "rb") as f:
        return f.read()

def stats():
    h.flush()   # the filter rewrites its stats file at every flush
    with open(os.environ["STATS"]) as f:
        return {k: int(v) for k, v in (line.strip().split("=") for line in f if "=" in line)}

def write(off, n, flags=0):
    data = rnd.randbytes(n)
    h.pwrite(data, off, flags)
    model[off:off + n] = data

def zero(off, n, flags=0):
    h.zero(n, off, flags)
    model[off:off + n] = bytes(n)

def check(off, n):
    got = h.pread(n, off)
    assert got == model[off:off + n], "read mismatch at %d+%d" % (off, n)

M = 1 << 20
check(12345, 100000)                    # unaligned read before any write
write(0, 65536)                         # one aligned block
write(131072, 262144)                   # aligned, several blocks
write(65536 - 100, 300)                 # unaligned, crosses a block boundary
write(500001, 200000)                   # unaligned head and tail
write(size - 1000, 1000)                # the partial last block
write(7, 1)                             # one byte
# NBD zero may trim unless NO_HOLE is set (nbdkit: NBDKIT_FLAG_MAY_TRIM).
zero(300000, 70000)                     # unaligned zero, may trim
zero(1 * M, 1 * M)                      # aligned zero, may trim
zero(2 * M + 5, 1000, nbd.CMD_FLAG_NO_HOLE)
zero(2 * M + 65536, 65536, nbd.CMD_FLAG_NO_HOLE)   # aligned, no trim
check(0, size)
check(65536 - 1, 3)
check(size - 1, 1)

if mode == "writeback":
    assert origin_bytes() == initial, "writeback: origin changed before flush"
if mode == "writethrough":
    assert origin_bytes() == model, "writethrough: origin differs before flush"

# FUA: in writeback and writethrough the data is in the origin on return.
fua_off = 3 * M + 17
write(fua_off, 5000, nbd.CMD_FLAG_FUA)
if mode != "unsafe":
    assert origin_bytes()[fua_off:fua_off + 5000] == model[fua_off:fua_off + 5000], "FUA"

# Fast zero is advertised but always refused, as by nbdkit's cache filter.
assert h.can_fast_zero()
try:
    h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO)
    raise AssertionError("fast zero succeeded")
except nbd.Error as e:
    assert e.errnum in (errno.ENOTSUP, errno.EOPNOTSUPP), e
check(0, 65536)

h.flush()
check(0, size)
if mode != "unsafe":
    assert origin_bytes() == model, "%s: origin differs from the model after flush" % mode

# cache-on-read: a second read of an untouched range hits only when on.
before = stats()["hits"]
check(3 * M + 65536 * 2, 131072)
check(3 * M + 65536 * 2, 131072)
gained = stats()["hits"] - before
if cor:
    assert gained >= 2, "cache-on-read=true: second read did not hit (hits +%d)" % gained
else:
    assert gained == 0, "cache-on-read=false: reads were cached (hits +%d)" % gained
print("%s cor=%s ok, stats %s" % (mode, cor, stats()))
PY
    # The origin matched the model after the last flush (checked above);
    # shutting down must not change it.
    before="$(md5sum <"$WORK/$name.img")"
    stop_nbdkit "$name"
    if [[ "$mode" != unsafe ]]; then
      [[ "$(md5sum <"$WORK/$name.img")" == "$before" ]] || fail "$name: shutdown changed the origin"
    fi
  done
done

echo "== port of test-cache-block-size.sh / test-cache-on-read.sh"
for cor in false true; do
  truncate -s 128K "$WORK/bs-$cor.img"
  start_nbdkit "bs-$cor" --filter="$FILTER" file "$WORK/bs-$cor.img" \
    cache-min-block-size=64K cache-on-read="$cor" cache-dir="$WORK"
  ORIGIN="$WORK/bs-$cor.img" nbdsh_on "bs-$cor" <<'PY'
import os
buf = b"abcd" * 16384
h.pwrite(buf, 32768)
assert h.pread(32768, 0) == bytearray(32768)
assert h.pread(65536, 32768) == buf
h.flush()
with open(os.environ["ORIGIN"], "rb") as f:
    assert f.read(32768) == bytearray(32768)
    assert f.read(65536) == buf
PY
  stop_nbdkit "bs-$cor"
done
echo PASS
