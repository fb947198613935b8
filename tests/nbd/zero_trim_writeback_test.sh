#!/bin/bash
# What ringcache sends to the origin, seen through nbdkit's log filter placed
# between ringcache and the plugin:
# - zeroes reach the origin as zero requests, not as writes of zero data
#   (writeback after flush, writethrough at once);
# - a trim of a cached (dirty) range leaves cache and origin coherent: after
#   flush, reads through the filter equal the origin file;
# - write-back sends runs of adjacent dirty blocks as large writes, not one
#   write per block;
# - a flush does work proportional to the dirty blocks, not to the disk size
#   (one dirty block on a 64 GiB disk: one write, quickly).
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
for mode in writeback writethrough; do
  name="zt-$mode"
  make_random "$WORK/$name.img" $((32 * M)) 21
  start_nbdkit "$name" --filter="$FILTER" --filter=log file "$WORK/$name.img" \
    logfile="$WORK/$name.oplog" cache="$mode" cache-dir="$WORK"
  MODE="$mode" OPLOG="$WORK/$name.oplog" ORIGIN="$WORK/$name.img" nbdsh_on "$name" <<'PY'
import os, re, random
M = 1 << 20
mode, oplog, origin = os.environ["MODE"], os.environ["OPLOG"], os.environ["ORIGIN"]
rnd = random.Random(8)
OP = re.compile(r"connection=\d+ (Write|Zero|Trim|Flush|Read) id=\d+(?: offset=0x([0-9a-f]+) count=0x([0-9a-f]+))?")

def ops_since(mark):
    """Origin requests logged after `mark` lines: [(op, offset, count)]."""
    with open(oplog) as f:
        lines = f.readlines()[mark:]
    out = []
    for l in lines:
        m = OP.search(l)
        if m and "..." not in l.split(m.group(0))[0]:
            off = int(m.group(2), 16) if m.group(2) else 0
            cnt = int(m.group(3), 16) if m.group(3) else 0
            out.append((m.group(1), off, cnt))
    return out

def mark():
    with open(oplog) as f:
        return len(f.readlines())

def overlaps(op, a, b):
    return op[1] < b and a < op[1] + op[2]

def origin_range(off, n):
    with open(origin, "rb") as f:
        f.seek(off)
        return f.read(n)

# Zeroes go to the origin as zero requests.
m = mark()
h.zero(4 * M, 4 * M)
h.flush()
ops = ops_since(m)
zeros = [o for o in ops if o[0] == "Zero" and overlaps(o, 4 * M, 8 * M)]
writes = [o for o in ops if o[0] == "Write" and overlaps(o, 4 * M, 8 * M)]
assert zeros, ("no zero request reached the origin", ops)
assert not writes, ("zeroes reached the origin as data writes", writes)
assert sum(o[2] for o in zeros) >= 4 * M, zeros
assert origin_range(4 * M, 4 * M) == bytes(4 * M)
assert h.pread(4 * M, 4 * M) == bytes(4 * M)

# Trim of a dirty cached range: coherent with the origin after flush.
h.pwrite(rnd.randbytes(M), 10 * M)
h.trim(M, 10 * M)
h.flush()
assert h.pread(M, 10 * M) == origin_range(10 * M, M), "trim left cache and origin incoherent"
# Half-block trims leave the data alone (nothing is promised, but it stays coherent).
h.pwrite(rnd.randbytes(100000), 12 * M)
h.trim(30000, 12 * M + 1000)
h.flush()
assert h.pread(100000, 12 * M) == origin_range(12 * M, 100000)

# Write-back coalesces adjacent dirty blocks into large writes.
if mode == "writeback":
    for i in range(16):
        h.pwrite(rnd.randbytes(65536), 20 * M + i * 65536)
    m = mark()
    h.flush()
    writes = [o for o in ops_since(m) if o[0] == "Write"]
    assert writes and len(writes) <= 4, ("16 adjacent dirty blocks took %d writes" % len(writes), writes)
    assert max(o[2] for o in writes) >= 4 * 65536, writes
    print("16 adjacent dirty blocks written back in %d write(s)" % len(writes))
with open(origin, "rb") as f:
    assert f.read() == h.pread(32 * M, 0), "origin differs from the export after flush"
PY
  stop_nbdkit "$name"
done

echo "== flush work is proportional to the dirty blocks"
start_nbdkit big --filter="$FILTER" --filter=log memory 64G \
  logfile="$WORK/big.oplog" cache=writeback cache-dir="$WORK"
OPLOG="$WORK/big.oplog" nbdsh_on big <<'PY'
import os, time
h.pwrite(b"x" * 4096, 40 << 30)
with open(os.environ["OPLOG"]) as f:
    mark = len(f.readlines())
t = time.monotonic()
h.flush()
elapsed = time.monotonic() - t
with open(os.environ["OPLOG"]) as f:
    ops = [l for l in f.readlines()[mark:] if " Write id=" in l and "..." not in l.split(" Write id=")[0]]
assert len(ops) == 1, ("one dirty block, %d origin writes" % len(ops), ops)
assert elapsed < 1.0, "flush of one dirty block on a 64 GiB disk took %.3f s" % elapsed
t = time.monotonic()
h.flush()
elapsed = time.monotonic() - t
assert elapsed < 1.0, "flush of a clean cache took %.3f s" % elapsed
print("flush of one dirty block on 64 GiB: 1 origin write, ok")
PY
stop_nbdkit big
echo PASS
