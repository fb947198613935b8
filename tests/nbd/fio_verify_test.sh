#!/bin/bash
# Parallel I/O with checksums: fio's nbd engine, 4 jobs x iodepth 8, random
# writes of mixed sizes with crc32c verification, through ringcache in
# writeback mode with a cache smaller than the data (reclaim under load).
# Then flush, restart nbdkit with a fresh (empty) cache, and let fio verify
# the data again, now coming from the origin.
source "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
truncate -s $((32 * M)) "$WORK/fio.img"
job() {  # extra fio args...
  # fio may leave verify state files in its working directory: use $WORK.
  (cd "$WORK" && timeout 120 fio --name=rc --ioengine=nbd --uri="$(uri fio)" \
    --rw=randwrite --bsrange=4k-128k --iodepth=8 --numjobs=4 --size=8M \
    --offset_increment=8M --verify=crc32c --verify_fatal=1 --randrepeat=1 \
    --group_reporting --verify_state_save=0 --output="$WORK/fio.out" "$@") ||
    { cat "$WORK/fio.out" >&2; fail "fio $*"; }
}

start_nbdkit fio --filter="$FILTER" file "$WORK/fio.img" cache=writeback \
  cache-max-size=8M cache-on-read=true cache-dir="$WORK"
job
grep -q "err= 0" "$WORK/fio.out" || { cat "$WORK/fio.out" >&2; fail "fio reported errors"; }
nbdsh_on fio <<<'h.flush()'
stop_nbdkit fio
echo "writeback run: $(tr '\n' ' ' <"$WORK/fio.stats")"
[[ "$(stat_of fio evictions)" -gt 0 ]] || fail "the cache never reclaimed (working set 4x the cache)"

start_nbdkit fio --filter="$FILTER" file "$WORK/fio.img" cache=writethrough \
  cache-on-read=true cache-dir="$WORK"
job --verify_only
stop_nbdkit fio
echo PASS
