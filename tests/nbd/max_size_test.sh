#!/bin/bash
# cache-max-size with thresholds: a working set 4x the cache size is written
# and read repeatedly (writeback and writethrough, cache-on-read on); every
# byte read matches a model, the cache file's allocated size (st_blocks of the
# unlinked file, through /proc/PID/fd) never exceeds cache-max-size, and after
# flush the origin equals the model.
# Plus the port of nbdkit's test-cache-max-size.sh (qemu-io, relative TMPDIR).
source "$(dirname "$0")/lib.sh"

max=$((4 * 1024 * 1024))

for mode in writeback writethrough; do
  name="max-$mode"
  mkdir -p "$WORK/$name.cache"
  make_random "$WORK/$name.img" $((4 * max)) 11
  start_nbdkit "$name" --filter="$FILTER" file "$WORK/$name.img" \
    cache="$mode" cache-max-size="$max" cache-high-threshold=90 \
    cache-low-threshold=60 cache-on-read=true cache-dir="$WORK/$name.cache"
  MAX="$max" PID="$(pid_of "$name")" CACHE_DIR="$WORK/$name.cache" \
    ORIGIN="$WORK/$name.img" STATS="$WORK/$name.stats" MODE="$mode" \
    nbdsh_on "$name" <<'PY'
import os, random
max_size, pid, cache_dir = int(os.environ["MAX"]), os.environ["PID"], os.environ["CACHE_DIR"]
origin = os.environ["ORIGIN"]
model = bytearray(open(origin, "rb").read())
size = len(model)
rnd = random.Random(5)

def cache_fd():
    d = "/proc/%s/fd" % pid
    for fd in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, fd)).startswith(cache_dir + "/"):
                return os.path.join(d, fd)
        except OSError:
            pass
    raise AssertionError("no cache file open under " + cache_dir)

fd_path = cache_fd()
assert os.listdir(cache_dir) == [], "cache file is visible: %s" % os.listdir(cache_dir)
peak = 0
def sample():
    global peak
    used = os.stat(fd_path).st_blocks * 512
    peak = max(peak, used)
    assert used <= max_size, "cache file uses %d bytes > cache-max-size %d" % (used, max_size)

for rnd_pass in range(3):
    for _ in range(60):
        off = rnd.randrange(0, size - 1)
        n = min(rnd.randrange(1, 300000), size - off)
        if rnd.random() < 0.5:
            data = rnd.randbytes(n)
            h.pwrite(data, off)
            model[off:off + n] = data
        else:
            assert h.pread(n, off) == model[off:off + n], "read %d+%d" % (off, n)
        sample()
    for off in range(0, size, 1 << 20):             # sequential read of it all
        assert h.pread(1 << 20, off) == model[off:off + (1 << 20)], "pass %d at %d" % (rnd_pass, off)
        sample()
h.flush()
with open(origin, "rb") as f:
    assert f.read() == model, "origin differs from the model after flush"
with open(os.environ["STATS"]) as f:
    print(os.environ["MODE"], "peak cache file use", peak, "bytes;", " ".join(l.strip() for l in f))
PY
  [[ "$(stat_of "$name" evictions)" -gt 0 ]] || fail "$name: reclaim never evicted anything"
  stop_nbdkit "$name"
done

echo "== port of test-cache-max-size.sh"
mkdir -p "$WORK/port/cache"
truncate -s 1G "$WORK/port/base.img"
# A relative TMPDIR, as in nbdkit's test: resolved before nbdkit daemonises.
pushd "$WORK/port" >/dev/null
TMPDIR=cache start_nbdkit_daemon port --filter="$FILTER" file base.img \
  cache-max-size=10M cache-on-read=true
popd >/dev/null
timeout 120 qemu-io -f raw "$(uri port)" \
  -c "w -P 0 0 10M" -c "w -P 0 20M 10M" -c "r 20M 10M" -c "r 30M 10M" -c "w -P 0 40M 10M" >/dev/null
fd="$(cache_fd_of port "$WORK/port/cache")" || fail "no cache file under the relative TMPDIR"
used=$(( $(stat -L -c '%b * %B' "$fd") ))
[[ $used -le $((10 * 1024 * 1024)) ]] || fail "cache file uses $used bytes > 10M"
echo "port: cache file uses $used bytes"
stop_nbdkit port
[[ -z "$(ls -A "$WORK/port/cache")" ]] || fail "files left in the cache dir: $(ls -A "$WORK/port/cache")"
echo "== reclaim holds usage between the thresholds"
make_random "$WORK/thr.img" $((16 * 1024 * 1024)) 10
start_nbdkit thr --filter="$FILTER" file "$WORK/thr.img" cache-max-size="$max" \
  cache-high-threshold=90 cache-low-threshold=60 cache-on-read=true cache-dir="$WORK"
STATS="$WORK/thr.stats" nbdsh_on thr <<'PY'
import os
def stats():
    h.flush()
    with open(os.environ["STATS"]) as f:
        return {k: int(v) for k, v in (l.strip().split("=") for l in f if "=" in l)}
# 4M cache of 64K blocks: 64 blocks; reclaim starts above 57 (90%) and
# stops at 38 (60%). Fill it in 512K reads and watch blocks_cached.
for i in range(1, 17):
    h.pread(512 << 10, (i - 1) * (512 << 10))
    cached = stats()["blocks_cached"]
    assert cached <= 57, "after %dK read: %d blocks cached > high threshold" % (i * 512, cached)
    if i * 8 >= 38:
        assert cached >= 38 - 8, "after %dK read: %d blocks cached, reclaim went far below the low threshold (38)" % (i * 512, cached)
print("thresholds ok:", stats())
PY
stop_nbdkit thr
echo PASS
