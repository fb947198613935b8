#!/bin/bash
# Requests with flags the filter does not support are refused, not silently
# accepted (issue 5). libnbd's strict mode is turned off so that the client
# really sends them; nbdkit and the filter must answer EINVAL or ENOTSUP, and
# the data must be unchanged. Supported flags (FUA, MAY_TRIM) still work, and
# fast zero is refused with ENOTSUP as nbdkit's cache filter does.
source "$(dirname "$0")/lib.sh"

for mode in writeback writethrough unsafe; do
  name="fl-$mode"
  start_nbdkit "$name" --filter="$FILTER" memory 4M cache="$mode" cache-dir="$WORK"
  MODE="$mode" nbdsh_on "$name" <<'PY'
import errno, os
mode = os.environ["MODE"]
h.set_strict_mode(0)   # send what we ask, let the server judge
B = 65536
h.pwrite(b"a" * B, 0)
refused = 0
def refused_with(fn, what, allowed=(errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)):
    global refused
    try:
        fn()
    except nbd.Error as e:
        # libnbd gives the errno as a name ("EINVAL") or a number.
        code = getattr(errno, e.errno) if isinstance(e.errno, str) else e.errno
        assert code in allowed, "%s: errno %s (%s)" % (what, e.errno, e)
        refused += 1
        return
    raise AssertionError("%s was accepted" % what)

# Flags that do not belong to the command.
refused_with(lambda: h.pwrite(b"b" * B, 0, nbd.CMD_FLAG_NO_HOLE), "write with NO_HOLE")
refused_with(lambda: h.pwrite(b"b" * B, 0, nbd.CMD_FLAG_FAST_ZERO), "write with FAST_ZERO")
refused_with(lambda: h.pwrite(b"b" * B, 0, nbd.CMD_FLAG_REQ_ONE), "write with REQ_ONE")
refused_with(lambda: h.pwrite(b"b" * B, 0, 1 << 10), "write with an unknown bit")
refused_with(lambda: h.trim(B, 0, nbd.CMD_FLAG_NO_HOLE), "trim with NO_HOLE")
refused_with(lambda: h.cache(B, 0, 1 << 9), "cache with an unknown bit")
refused_with(lambda: h.zero(B, 0, 1 << 12), "zero with an unknown bit")
# Fast zero: a cache cannot promise it (nbdkit's rule): ENOTSUP, or the
# server does not offer it at all (then EINVAL).
refused_with(lambda: h.zero(B, 0, nbd.CMD_FLAG_FAST_ZERO), "fast zero",
             (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL))
# None of them changed anything.
assert h.pread(B, 0) == b"a" * B, "a refused request changed the data"
# Supported flags work. (FUA on flush and cache is allowed by the NBD spec,
# which lets a client set FUA on any command; nbdkit accepts it.)
h.flush(nbd.CMD_FLAG_FUA)
h.cache(B, 0, nbd.CMD_FLAG_FUA)
h.pwrite(b"c" * B, 0, nbd.CMD_FLAG_FUA)
h.zero(B, B, nbd.CMD_FLAG_NO_HOLE)
h.zero(B, 2 * B, nbd.CMD_FLAG_FUA)
assert h.pread(B, 0) == b"c" * B and h.pread(2 * B, B) == bytes(2 * B)
print(mode, "refused", refused, "requests with unsupported flags")
PY
  stop_nbdkit "$name"
done
echo PASS
