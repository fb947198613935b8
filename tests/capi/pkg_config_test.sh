#!/bin/bash
# The install layout works for a plain C program: lays out the header, the
# library and ringcache.pc as scripts/install_capi.sh does (under a temporary
# PREFIX), then builds capi/example.c with
#   cc -std=c99 example.c $(pkg-config --cflags --libs ringcache)
# and runs it without LD_LIBRARY_PATH (the .pc's rpath finds the library).
# capi/example_queue.c must build with the command in its comment too
# (-std=c11: it uses aligned_alloc); example_queue_test runs it.
set -euo pipefail
header="$1" lib="$2" pc="$3" example="$4" example_queue="$5"
prefix="${TEST_TMPDIR:-$(mktemp -d)}/prefix"
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
cp "$header" "$prefix/include/ringcache.h"
cp "$lib" "$prefix/lib/libringcache.so"
sed -e "s|^prefix=.*|prefix=$prefix|" "$pc" > "$prefix/lib/pkgconfig/ringcache.pc"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs ringcache)
echo "pkg-config --cflags --libs ringcache: $flags"
# Under --config=asan/tsan the library is instrumented: so must the program be.
sanitize=()
needed=$(readelf -d "$lib")
if grep -q 'libasan' <<<"$needed"; then sanitize=(-fsanitize=address,undefined); fi
if grep -q 'libtsan' <<<"$needed"; then sanitize=(-fsanitize=thread); fi
cc -std=c99 -pedantic -Wall -Werror -Wno-unused-parameter "${sanitize[@]}" "$example" $flags \
  -o "$prefix/example"
cc -std=c11 -pedantic -Wall -Werror "${sanitize[@]}" "$example_queue" $flags \
  -o "$prefix/example_queue"
unset LD_LIBRARY_PATH
out=$(cd "$prefix" && TMPDIR="$prefix" ./example cache=writeback cache-min-block-size=4096)
echo "$out"
grep -q 'in the origin before flush: ""' <<<"$out" || { echo "FAIL: writeback reached the origin before flush"; exit 1; }
grep -q 'in the origin after flush: "hello from ringcache"' <<<"$out" || { echo "FAIL: flush did not reach the origin"; exit 1; }
grep -q '^reads 1: p50 <= ' <<<"$out" || { echo "FAIL: no read latency from rc_get_latency"; exit 1; }
if (cd "$prefix" && ./example cache=bogus 2>"$prefix/err"); then
  echo "FAIL: a bad parameter was accepted"; exit 1
fi
grep -q "cache=bogus" "$prefix/err" || { echo "FAIL: the error does not name the parameter:"; cat "$prefix/err"; exit 1; }
echo "PASS"
