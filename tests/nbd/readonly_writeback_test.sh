#!/bin/bash
# Write-back runs inside whichever client request needs it, and that
# request's connection may be read-only: here the plugin lets export "rw"
# write and export "ro" not (nbdkit's eval plugin, can_write per export).
# nbdkit asserts that no write goes through a read-only connection's `next`
# (it aborted the server); the filter now refuses such write-backs (EROFS):
# reads on "ro" still succeed, the blocks stay dirty, and a flush on "rw"
# writes them all back.
source "$(dirname "$0")/lib.sh"

disk="$WORK/disk.img"
make_random "$disk" $((8 * 1024 * 1024)) 7
cp "$disk" "$WORK/expected.img"
start_nbdkit ro --filter="$FILTER" eval \
  open='echo "$3"' \
  get_size="stat -c %s '$disk'" \
  can_write='[ "$2" = rw ] && exit 0; exit 3' \
  can_flush='exit 0' \
  pread="dd if='$disk' iflag=skip_bytes,count_bytes skip=\$4 count=\$3 status=none" \
  pwrite="dd of='$disk' oflag=seek_bytes conv=notrunc seek=\$4 status=none" \
  flush='exit 0' \
  cache=writeback cache-on-read=true cache-min-block-size=4096 cache-max-size=1M cache-dir="$WORK"

# Export "rw": 2 MiB of writes into a 1M cache, so reclaim meets dirty
# victims (which only a request with a writable origin can write back).
/usr/bin/python3 - "$(sock ro)" "$WORK/expected.img" <<'PY'
import nbd, random, sys
h = nbd.NBD(); h.set_export_name("rw"); h.connect_unix(sys.argv[1])
assert not h.is_read_only()
rng = random.Random(3)
with open(sys.argv[2], "r+b") as f:
    for i in range(512):
        off = rng.randrange(0, 8 * 1024 * 1024 // 4096) * 4096
        data = rng.randbytes(4096)
        h.pwrite(data, off)
        f.seek(off); f.write(data)
h.shutdown()
PY
# Export "ro": prefetches (NBD_CMD_CACHE) then reads of the whole disk,
# which take the cache over its high mark with dirty victims in the way.
/usr/bin/python3 - "$(sock ro)" "$WORK/expected.img" <<'PY'
import nbd, sys
h = nbd.NBD(); h.set_export_name("ro"); h.connect_unix(sys.argv[1])
assert h.is_read_only()
want = open(sys.argv[2], "rb").read()
for off in range(0, len(want), 65536):
    h.cache(65536, off)  # always cached: the cache goes over its high mark
for off in range(0, len(want), 65536):
    got = h.pread(65536, off)
    assert got == want[off:off + 65536], f"ro read at {off} differs"
h.shutdown()
PY
kill -0 "$(pid_of ro)" 2>/dev/null || fail "nbdkit died: $(tail -5 "$WORK/ro.log")"
# A flush through the writable export writes everything back.
/usr/bin/python3 - "$(sock ro)" <<'PY'
import nbd, sys
h = nbd.NBD(); h.set_export_name("rw"); h.connect_unix(sys.argv[1])
h.flush()
h.shutdown()
PY
stop_nbdkit ro
cmp "$disk" "$WORK/expected.img" || fail "the plugin's disk differs from what was written"
echo PASS
