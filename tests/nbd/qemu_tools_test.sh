#!/bin/bash
# Real clients: qemu-img and qemu-io through ringcache (writeback).
# - The port of nbdkit's test-cache.sh (there: a guestfish ext4 workload;
#   here: qemu-img convert of a 48 MiB image, qemu-img compare, then the
#   origin checked with cmp after qemu-img's own flush).
# - qemu-io patterned writes and verifying reads at unaligned offsets.
# - The port of test-cache-unaligned.sh: a 130000-byte disk (not a multiple
#   of 4K), written whole, read back, flushed, origin checked.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
make_random "$WORK/src.img" $((48 * M)) 12
truncate -s $((48 * M)) "$WORK/disk.img"
start_nbdkit qemu --filter="$FILTER" file "$WORK/disk.img" cache-dir="$WORK"
timeout 120 qemu-img convert -n -f raw -O raw "$WORK/src.img" "$(uri qemu)"
timeout 120 qemu-img compare -f raw -F raw "$WORK/src.img" "$(uri qemu)"
# qemu-img convert flushes the target when it finishes.
cmp "$WORK/src.img" "$WORK/disk.img" || fail "origin differs after qemu-img convert"

timeout 60 qemu-io -f raw "$(uri qemu)" \
  -c "write -P 0x5a 1000 70000" \
  -c "write -P 0xa5 65535 2" \
  -c "write -z 200000 300000" \
  -c "aio_write -P 0x11 1048576 1048576" -c "aio_write -P 0x22 3145728 65536" -c "aio_flush" \
  -c "read -P 0x5a 1000 64535" -c "read -P 0xa5 65535 2" -c "read -P 0x5a 65537 5463" \
  -c "read -P 0 200000 300000" -c "read -P 0x11 1048576 1048576" -c "read -P 0x22 3145728 65536" \
  -c "flush" >"$WORK/qemu-io.out"
if grep -q "Pattern verification failed\|failed" "$WORK/qemu-io.out"; then
  cat "$WORK/qemu-io.out" >&2
  fail "qemu-io pattern verification failed"
fi
/usr/bin/python3 - "$WORK/disk.img" <<'PY' || fail "origin does not hold qemu-io's writes"
import sys
d = open(sys.argv[1], "rb").read()
assert d[1000:65535] == b"\x5a" * 64535
assert d[65535:65537] == b"\xa5\xa5"
assert d[65537:71000] == b"\x5a" * 5463
assert d[200000:500000] == bytes(300000)
assert d[1 << 20:2 << 20] == b"\x11" * (1 << 20)
assert d[3 << 20:(3 << 20) + 65536] == b"\x22" * 65536
PY
stop_nbdkit qemu

echo "== port of test-cache-unaligned.sh"
truncate -s 130000 "$WORK/unaligned.img"
start_nbdkit unaligned --filter="$FILTER" file "$WORK/unaligned.img" cache-dir="$WORK"
ORIGIN="$WORK/unaligned.img" nbdsh_on unaligned <<'PY'
import os
assert h.get_size() == 130000
buf = b"abcdefghijklm" * 10000
h.pwrite(buf, 0)
assert h.pread(130000, 0) == buf
h.flush()
with open(os.environ["ORIGIN"], "rb") as f:
    assert f.read() == buf
PY
stop_nbdkit unaligned
echo PASS
