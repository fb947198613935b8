#!/bin/bash
# capi/example_queue.c, built against libringcache.so: 100,000 random reads
# through a read queue, 32 in flight, every byte checked; it prints "ok".
# Run with a buffered and with an O_DIRECT cache file.
set -euo pipefail
bin=$1
dir=${TEST_TMPDIR:-/tmp}
for extra in direct-io=false direct-io=true; do
  out=$("$bin" "cache-dir=$dir" "$extra")
  echo "$extra: $out"
  [ "$(tail -1 <<<"$out")" = ok ] || { echo "FAIL: example_queue $extra"; exit 1; }
done
echo PASS
