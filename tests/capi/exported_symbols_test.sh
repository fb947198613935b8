#!/bin/bash
# libringcache.so exports the C API (rc_*) and nothing else.
#
# "Exported" means a defined dynamic symbol with GLOBAL, WEAK or UNIQUE
# binding. `nm -D --defined-only` also lists LOCAL symbols that stay in
# .dynsym only for TLS relocations (lower-case type letters, e.g. the engine's
# thread_local items): those cannot be bound from outside and are ignored.
set -euo pipefail
lib="$1"
syms=$(readelf --dyn-syms -W "$lib" |
       awk '$5 ~ /^(GLOBAL|WEAK|UNIQUE)$/ && $7 != "UND" && $4 != "SECTION" {print $8}' |
       sed "s/@.*//" | grep -vx "RINGCACHE_1" | sort -u)
if [[ -z "$syms" ]]; then
  echo "FAIL: $lib exports no symbols"; exit 1
fi
others=$(grep -v '^rc_' <<<"$syms" || true)
if [[ -n "$others" ]]; then
  echo "FAIL: $lib exports symbols outside rc_*:"; echo "$others"; exit 1
fi
for want in rc_engine_open rc_engine_close rc_get_size rc_block_size rc_pread rc_pwrite \
            rc_zero rc_flush rc_prefetch rc_submit_pread rc_submit_pwrite rc_submit_flush \
            rc_get_stats rc_get_latency rc_last_error rc_queue_open rc_queue_pread rc_queue_wait \
            rc_queue_in_flight rc_queue_close; do
  if ! grep -qx "$want" <<<"$syms"; then
    echo "FAIL: $lib does not export $want"; exit 1
  fi
done
echo "PASS: $(wc -l <<<"$syms") symbols exported, all rc_*"
