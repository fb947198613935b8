#!/bin/bash
# A plugin that grows between connections, from a size that ends inside a
# cache block: the next connection must read the plugin's new bytes, not the
# zeros the cache held past the old end, and the write to that last block
# (dirty in writeback and unsafe modes) must reach the plugin without
# zeroing the new bytes. nbdkit's own cache filter fails the first check
# (README, "Differences from nbdkit's cache filter").
source "$(dirname "$0")/lib.sh"

for mode in writeback writethrough unsafe; do
  img="$WORK/grow-$mode.img"
  make_random "$img" 100000 7
  make_random "$WORK/added.bin" 50000 8
  start_nbdkit "g$mode" --filter="$FILTER" file "$img" cache="$mode" cache-on-read=true \
    cache-dir="$WORK"
  nbdsh_on "g$mode" <<'PY'
assert h.get_size() == 100000
h.pread(100000, 0)                 # caches both blocks, the short last one too
h.pwrite(b"W" * 50, 65536 + 10)    # into that last block
PY
  cp "$img" "$WORK/expect.bin"
  printf 'W%.0s' $(seq 50) | dd of="$WORK/expect.bin" bs=1 seek=$((65536 + 10)) conv=notrunc status=none
  cat "$WORK/added.bin" >>"$img"
  cat "$WORK/added.bin" >>"$WORK/expect.bin"
  MODE=$mode IMG="$img" EXPECT="$WORK/expect.bin" nbdsh_on "g$mode" <<'PY'
import os
want = open(os.environ["EXPECT"], "rb").read()
assert h.get_size() == 150000, h.get_size()
got = h.pread(150000, 0)
if got != want:
    i = next(i for i in range(len(want)) if got[i] != want[i])
    raise AssertionError("%s: byte %d differs after the plugin grew" % (os.environ["MODE"], i))
h.flush()
disk = open(os.environ["IMG"], "rb").read()
assert disk == want, "%s: the plugin's file differs at byte %d" % (
    os.environ["MODE"], next(i for i in range(len(want)) if disk[i] != want[i]))
PY
  stop_nbdkit "g$mode"
  echo "$mode: ok"
done
echo PASS
