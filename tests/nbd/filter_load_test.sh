#!/bin/bash
# The filter .so loads in the installed nbdkit, exports only nbdkit's entry
# point, resolves every engine symbol internally, declares the parallel
# thread model and lists every parameter in --help.
source "$(dirname "$0")/lib.sh"

# Only filter_init is exported (GLOBAL or WEAK and defined; LOCAL TLS
# symbols may appear in .dynsym for TLS relocations, they are not exported).
exported="$(readelf --dyn-syms -W "$FILTER" |
  awk '$5 ~ /GLOBAL|WEAK|UNIQUE/ && $7 != "UND" {print $8}' | sort | tr '\n' ' ')"
[[ "$exported" == "filter_init " ]] || fail "exported symbols: '$exported' (want only filter_init)"

# No engine symbol left for the dynamic linker (the engine is linked in).
if nm -D --undefined-only "$FILTER" | c++filt | grep -q 'ringcache::'; then
  nm -D --undefined-only "$FILTER" | c++filt | grep 'ringcache::' >&2
  fail "engine symbols are undefined in the filter"
fi
# Every undefined symbol is found in the filter's libraries, except nbdkit's
# own API, which the nbdkit binary provides when it loads the filter.
unresolved="$(ldd -r "$FILTER" 2>&1 | grep 'undefined symbol' | grep -v 'undefined symbol: nbdkit_' || true)"
[[ -z "$unresolved" ]] || fail "unresolved symbols: $unresolved"

# --help lists every parameter of nbdkit's cache filter and ringcache's own.
help="$(nbdkit --filter="$FILTER" null --help)"
for key in cache cache-min-block-size cache-max-size cache-high-threshold \
           cache-low-threshold cache-on-read cache-dir shards queue-depth \
           direct-io workers fill-overflow; do
  grep -q "^$key=" <<<"$help" || fail "--help does not list $key"
done

# The filter loaded under its name, and keeps nbdkit fully parallel.
grep -q '^filter: ringcache (' <<<"$help" || fail "--help does not name the filter ringcache"
dump="$(nbdkit --filter="$FILTER" null --dump-plugin)"
grep -q '^thread_model=parallel$' <<<"$dump" || fail "dump-plugin: thread model: $dump"

# It serves: a trivial round trip through a real nbdkit.
start_nbdkit load --filter="$FILTER" memory 1M cache-dir="$WORK"
nbdsh_on load <<'PY'
h.pwrite(b"ringcache" * 10, 4000)
assert h.pread(90, 4000) == b"ringcache" * 10
PY
stop_nbdkit load
echo PASS
