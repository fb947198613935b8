#!/bin/bash
# libringcache.so exports the C API (the functions of ringcache.h) and nothing else.
#
# "Exported" means a defined dynamic symbol with GLOBAL, WEAK or UNIQUE
# binding. `nm -D --defined-only` also lists LOCAL symbols that stay in
# .dynsym only for TLS relocations (lower-case type letters, e.g. the engine's
# thread_local items): those cannot be bound from outside and are ignored.
set -euo pipefail
lib="$1"
header="$2"
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
# Every function ringcache.h declares is exported, and nothing else is: the
# header is the whole API. Declarations are written "type rc_name (" at the
# start of a line (GNU style), which is what is matched here.
declared=$(grep -E '^[a-z][^(]*\brc_[a-z_]+ \(' "$header" |
           sed -E 's/.*\b(rc_[a-z_]+) \(.*/\1/' | sort -u)
if (( $(wc -l <<<"$declared") < 20 )); then
  echo "FAIL: found only $(wc -l <<<"$declared") declarations in $header; has its style changed?"
  exit 1
fi
missing=$(comm -23 <(echo "$declared") <(echo "$syms"))
if [[ -n "$missing" ]]; then
  echo "FAIL: $lib does not export these functions of $header:"; echo "$missing"; exit 1
fi
undeclared=$(comm -13 <(echo "$declared") <(echo "$syms"))
if [[ -n "$undeclared" ]]; then
  echo "FAIL: $lib exports rc_* symbols that $header does not declare:"; echo "$undeclared"; exit 1
fi
echo "PASS: $(wc -l <<<"$syms") symbols exported, exactly the functions of $header"
