#!/bin/bash
# An origin that fails (nbdkit's error filter between ringcache and the
# plugin, switched on and off by trigger files): the client sees the origin's
# errno (ENOSPC for writes, EIO for reads), the server keeps serving, cached
# data still reads, and dirty data is not lost: once the origin recovers, a
# flush puts it in the origin.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
for mode in writeback writethrough; do
  name="err-$mode"
  make_random "$WORK/$name.img" $((8 * M)) 6
  start_nbdkit "$name" --filter="$FILTER" --filter=error file "$WORK/$name.img" \
    cache="$mode" cache-dir="$WORK" \
    error-pwrite=ENOSPC error-pwrite-rate=100% error-pwrite-file="$WORK/$name.wfail" \
    error-zero=ENOSPC error-zero-rate=100% error-zero-file="$WORK/$name.wfail" \
    error-pread=EIO error-pread-rate=100% error-pread-file="$WORK/$name.rfail"
  MODE="$mode" ORIGIN="$WORK/$name.img" WFAIL="$WORK/$name.wfail" RFAIL="$WORK/$name.rfail" \
    nbdsh_on "$name" <<'PY'
import errno, os, random
M = 1 << 20
mode, origin, wfail, rfail = (os.environ[k] for k in ("MODE", "ORIGIN", "WFAIL", "RFAIL"))
rnd = random.Random(2)
model = bytearray(open(origin, "rb").read())

def on(path): open(path, "w").close()
def off(path): os.unlink(path)
def expect_error(err, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        assert e.errnum == err, "expected %s, got %s (%s)" % (errno.errorcode[err], e.errnum, e)
        return
    raise AssertionError("%s%s succeeded with a failing origin" % (fn.__name__, args))
def origin_bytes():
    with open(origin, "rb") as f:
        return f.read()

d1 = rnd.randbytes(M)
if mode == "writeback":
    h.pwrite(d1, 1 * M)                       # cached, dirty
    model[M:2 * M] = d1
    on(wfail)
    expect_error(errno.ENOSPC, h.flush)       # write-back fails
    assert h.pread(M, M) == d1                # still served from the cache
    expect_error(errno.ENOSPC, h.flush)       # and fails again: still dirty
    off(wfail)
    h.flush()
    assert origin_bytes() == model, "dirty data lost after origin errors"
else:
    on(wfail)
    expect_error(errno.ENOSPC, h.pwrite, d1, 1 * M)
    expect_error(errno.ENOSPC, h.zero, 65536, 3 * M)
    off(wfail)
    h.pwrite(d1, 1 * M)
    model[M:2 * M] = d1
    assert origin_bytes() == model

# Reads: an uncached range fails with the origin's errno, cached data still reads.
on(rfail)
expect_error(errno.EIO, h.pread, 65536, 5 * M)
assert h.pread(M, M) == d1, "cached data unreadable while the origin fails reads"
# writeback: an unaligned write needs the rest of its block from the origin.
# (writethrough may send it to the origin as it is.)
if mode == "writeback":
    expect_error(errno.EIO, h.pwrite, b"z" * 100, 6 * M + 10)
off(rfail)
assert h.pread(65536, 5 * M) == model[5 * M:5 * M + 65536]
h.pwrite(b"z" * 100, 6 * M + 10)
model[6 * M + 10:6 * M + 110] = b"z" * 100
h.flush()
assert h.pread(8 * M, 0) == model
assert origin_bytes() == model
print(mode, "origin errors: ok")
PY
  stop_nbdkit "$name"
done
echo PASS
