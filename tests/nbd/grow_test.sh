#!/bin/bash
# A plugin that grows between connections, from a size that ends inside a
# cache block: the next connection must read the plugin's new bytes, not the
# zeros the cache held past the old end, and the write to that last block
# (dirty in writeback and unsafe modes) must reach the plugin without
# zeroing the new bytes. nbdkit's own cache filter fails the first check
# (README, "Differences from nbdkit's cache filter"). Then the same growth
# with a connection from before it still open.
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
# The plugin grows while a connection (A) from before stays open. nbdkit
# fixes each connection's size when it connects and aborts the server when a
# filter calls the plugin past it (nbdkit's own cache filter does, at A's
# flush). A's requests then meet blocks past its end: a dirty block a newer
# connection (B) wrote, and A's own last block, which now crosses A's end.
# ringcache must refuse to send the first through A (it stays dirty, and B's
# flush writes it) and serve A's reads and writes of the second from the
# bytes inside A's end, with the server still running and every byte right.
for mode in writeback writethrough unsafe; do
  img="$WORK/grow2-$mode.img"
  make_random "$img" 100000 9
  start_nbdkit "h$mode" --filter="$FILTER" file "$img" cache="$mode" cache-on-read=true \
    cache-dir="$WORK"
  MODE=$mode IMG="$img" SOCK="$(sock "h$mode")" nbdsh_on "h$mode" <<'PY'
import os, nbd
mode, img = os.environ["MODE"], os.environ["IMG"]
want = bytearray(open(img, "rb").read())
assert h.get_size() == 100000
with open(img, "ab") as f:                 # the plugin grows under connection A (h)
    f.write(bytes(range(256)) * 200)       # to 151,200 bytes
want += bytes(range(256)) * 200
b = nbd.NBD()
b.connect_unix(os.environ["SOCK"])
assert b.get_size() == 151200, b.get_size()
b.pwrite(b"B" * 4096, 131072 + 100)        # block 2, past A's end
want[131072 + 100:131072 + 4196] = b"B" * 4096
# A reads its last block, which now crosses its end, then writes into it.
got = h.pread(100000 - 65536, 65536)
assert got == bytes(want[65536:100000]), "%s: A's last block reads wrong" % mode
h.pwrite(b"A" * 100, 99000)
want[99000:99100] = b"A" * 100
assert h.pread(1000, 99000) == bytes(want[99000:100000]), "%s: A's write reads back wrong" % mode
h.cache(100000 - 65536, 65536)             # a prefetch rounded out past A's end
h.pwrite(b"a" * 65536, 0)                  # a whole block well inside A's end
want[0:65536] = b"a" * 65536
try:
    h.flush()
    a_flush = "ok"
except nbd.Error as e:
    a_flush = str(e)
if mode == "writeback":
    # B's dirty block lies past A's end: A cannot write it back, but A's own
    # dirty block goes out.
    assert a_flush != "ok", "writeback: A's flush wrote back a block past its end"
    assert open(img, "rb").read(65536) == b"a" * 65536, "writeback: A's flush skipped A's block"
else:
    assert a_flush == "ok", "%s: A's flush failed: %s" % (mode, a_flush)
b.flush()
assert b.pread(151200, 0) == bytes(want), "%s: B reads wrong bytes" % mode
if mode != "unsafe":
    disk = open(img, "rb").read()
    assert disk == bytes(want), "%s: the plugin's file differs at byte %d" % (
        mode, next(i for i in range(len(want)) if disk[i] != want[i]))
b.shutdown()
PY
  grep -q "lie past this connection's end" "$WORK/h$mode.log" || [ "$mode" != writeback ] ||
    fail "$mode: no message naming the blocks left dirty"
  stop_nbdkit "h$mode"
  echo "$mode, a connection from before the growth: ok"
done
echo PASS
