#!/bin/bash
# bench/lib/cpu_buckets.py: each sample of `perf script` output lands in the
# bucket its thread and call stack say, and the per-request figures follow
# from the sample counts.
set -euo pipefail
BUCKETS=${1:?usage: cpu_buckets_test.sh PATH/cpu_buckets.py}
fail() { echo "FAIL: $*" >&2; exit 1; }

sample() {  # COMM FRAME...: one sample in perf script's layout
  printf '%s 1234/1234 [000] 100.000000: 1001001 cpu-clock:\n' "$1"
  shift
  local f
  for f in "$@"; do printf '\t    ffffffff81000000 %s\n' "$f"; done
  printf '\n'
}
input=$(
  sample fio 'unix_stream_recvmsg+0x1 ([kernel.kallsyms])' '__recv+0x2 (/usr/lib/x86_64-linux-gnu/libc.so.6)'
  sample fio 'fio_nbd_queue+0x3 (/usr/lib/x86_64-linux-gnu/fio/fio-nbd.so)'
  sample nbdkit '_copy_to_iter+0x1 ([kernel.kallsyms])' '__do_sys_io_uring_enter+0x9 ([kernel.kallsyms])' 'io_uring_submit+0x1 (/usr/lib/x86_64-linux-gnu/liburing.so.2.3)'
  sample nbdkit 'ringcache::EngineImpl::ReadImpl+0x1 (/var/tmp/x/nbdkit-ringcache-filter.so)'
  sample iou-wrk-77 'copy_folio_from_iter_atomic+0x1 ([kernel.kallsyms])'
  sample nbdkit 'filemap_read+0x1 ([kernel.kallsyms])' '__x64_sys_pread64+0x1 ([kernel.kallsyms])' 'pread64+0x1 (/usr/lib/x86_64-linux-gnu/libc.so.6)'
  sample nbdkit 'cache_pread+0x1 (/usr/lib/x86_64-linux-gnu/nbdkit/filters/nbdkit-cache-filter.so)'
  sample nbdkit '0x1233 (/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-pattern-plugin.so)'
  sample nbdkit 'finish_task_switch.isra.0+0x1 ([kernel.kallsyms])' '__lll_lock_wait+0x1 (/usr/lib/x86_64-linux-gnu/libc.so.6)'
  sample nbdkit 'unix_stream_sendmsg+0x1 ([kernel.kallsyms])' '__send+0x1 (/usr/lib/x86_64-linux-gnu/libc.so.6)'
  sample swapper 'default_idle+0x1 ([kernel.kallsyms])'
  sample kworker/0:1 'process_one_work+0x1 ([kernel.kallsyms])'
)
# 12 samples at 1000 Hz over 1 s = 12 ms of CPU; 1000 requests.
out=$(printf '%s\n' "$input" | /usr/bin/python3 "$BUCKETS" 1 1000 1000)
echo "$out"
expect() {  # BUCKET SHARE US_PER_REQUEST
  grep -qE "^$1 +$2% +[0-9.]+ +$3\$" <<<"$out" || fail "expected '$1' at $2% and $3 us/request"
}
expect 'fio \(client\)' 16.7 2.00
expect 'ringcache' 25.0 3.00
expect 'nbdkit cache filter' 16.7 2.00
expect 'origin plugin' 8.3 1.00
expect 'nbdkit server' 16.7 2.00
expect 'idle' 8.3 1.00
expect 'other' 8.3 1.00
grep -q '^12 samples over 1 s at 1000 Hz, 1000 requests$' <<<"$out" || fail "sample count line"
# No samples, or no requests: an error, not a table of zeros.
if printf '' | /usr/bin/python3 "$BUCKETS" 1 1000 1000 2>/dev/null; then fail "empty input accepted"; fi
if printf '%s\n' "$input" | /usr/bin/python3 "$BUCKETS" 1 1000 0 2>/dev/null; then fail "zero requests accepted"; fi
echo PASS
