#!/bin/bash
# A long random workload over an origin that fails 10% of its requests
# (nbdkit's error filter below ringcache, error-rate=10% on reads, writes,
# zeroes and flushes while a trigger file exists). Every read returns the
# right bytes or an error, never wrong bytes; a failed write or zero is
# retried until acknowledged; the server keeps serving throughout; once the
# faults stop, one flush makes the origin equal the model. Every mode.
# RINGCACHE_LONG=1 runs 10x the operations.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
OPS=1500
[[ "${RINGCACHE_LONG:-}" == 1 ]] && OPS=15000
for mode in writeback writethrough unsafe; do
  for extra in "" "cache-max-size=1M"; do
    name="rf-$mode${extra:+-max}"
    make_random "$WORK/$name.img" $((4 * M)) 9
    touch "$WORK/$name.faults"
    start_nbdkit "$name" --filter="$FILTER" --filter=error file "$WORK/$name.img" \
      cache="$mode" cache-on-read=true cache-min-block-size=4K cache-dir="$WORK" $extra \
      error=EIO error-rate=10% error-file="$WORK/$name.faults"
    MODE="$mode" ORIGIN="$WORK/$name.img" FAULTS="$WORK/$name.faults" OPS="$OPS" \
      nbdsh_on "$name" <<'PY'
import os, random
mode, origin, faults = os.environ["MODE"], os.environ["ORIGIN"], os.environ["FAULTS"]
ops = int(os.environ["OPS"])
rnd = random.Random(7)
model = bytearray(open(origin, "rb").read())
size = len(model)
stats = dict(ops=0, read_ok=0, read_err=0, write_retries=0, flush_err=0)

def retry(fn, *args):
    for _ in range(200):
        try:
            fn(*args)
            return
        except nbd.Error:
            stats["write_retries"] += 1
    raise AssertionError("never acknowledged after 200 tries")

for i in range(ops):
    stats["ops"] += 1
    off = rnd.randrange(size)
    n = rnd.randint(1, min(size - off, 3 * 65536))
    op = rnd.random()
    if op < 0.40:
        try:
            got = h.pread(n, off)
        except nbd.Error:
            stats["read_err"] += 1
            continue
        assert got == bytes(model[off:off + n]), "op %d: read %d+%d returned wrong bytes" % (i, off, n)
        stats["read_ok"] += 1
    elif op < 0.75:
        data = rnd.randbytes(n)
        retry(h.pwrite, data, off)
        model[off:off + n] = data
    elif op < 0.85:
        retry(h.zero, n, off)
        model[off:off + n] = bytes(n)
    elif op < 0.93:
        try:
            h.cache(n, off)
        except nbd.Error:
            pass
    else:
        try:
            h.flush()
        except nbd.Error:
            stats["flush_err"] += 1

os.unlink(faults)                      # the origin recovers
h.flush()
assert h.pread(size, 0) == bytes(model), "export differs from the model after recovery"
if mode != "unsafe":
    assert open(origin, "rb").read() == bytes(model), "origin differs from the model after one flush"
assert stats["read_err"] + stats["write_retries"] + stats["flush_err"] > 0, "no fault seen"
print(mode, stats)
PY
    stop_nbdkit "$name"
  done
done
echo "random origin faults: ok"
