#!/bin/bash
# Installs the ringcache C API: header, shared library and pkg-config file.
#
#   scripts/install_capi.sh [PREFIX]        (default PREFIX: /usr/local)
#   DESTDIR=/tmp/stage scripts/install_capi.sh /usr    (staged, for packaging)
#
# Result:
#   PREFIX/include/ringcache.h
#   PREFIX/lib/libringcache.so
#   PREFIX/lib/pkgconfig/ringcache.pc
# after which `cc app.c $(pkg-config --cflags --libs ringcache)` builds a
# program (set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix pkg-config
# does not search by default). The .pc adds an rpath for PREFIX/lib, so the
# program runs without LD_LIBRARY_PATH wherever PREFIX is.
set -euo pipefail

prefix="${1:-/usr/local}"
case "$prefix" in
  /*) ;;
  *) echo "install_capi.sh: PREFIX must be an absolute path, not '$prefix'" >&2; exit 2 ;;
esac
prefix="${prefix%/}"
[[ -n "$prefix" ]] || prefix=/
destdir="${DESTDIR:-}"

cd "$(dirname "$0")/.."
bazel build --compilation_mode=opt //capi:libringcache.so //capi:ringcache_pc >&2
bin="$(bazel info --compilation_mode=opt bazel-bin 2>/dev/null)/capi"

install -d "$destdir$prefix/include" "$destdir$prefix/lib/pkgconfig"
install -m 0644 capi/ringcache.h "$destdir$prefix/include/ringcache.h"
install -m 0755 "$bin/libringcache.so" "$destdir$prefix/lib/libringcache.so"
# The bazel-built .pc has prefix=/usr/local: point it at this prefix.
sed -e "s|^prefix=.*|prefix=$prefix|" "$bin/ringcache.pc" \
  > "$destdir$prefix/lib/pkgconfig/ringcache.pc"
chmod 0644 "$destdir$prefix/lib/pkgconfig/ringcache.pc"

# Refresh the loader cache for system prefixes (root, no DESTDIR).
if [[ -z "$destdir" && "$(id -u)" == 0 ]] && command -v ldconfig >/dev/null; then
  ldconfig || true
fi

echo "installed: $destdir$prefix/include/ringcache.h"
echo "           $destdir$prefix/lib/libringcache.so"
echo "           $destdir$prefix/lib/pkgconfig/ringcache.pc"
if [[ -z "$destdir" ]]; then
  echo "build with: PKG_CONFIG_PATH=$prefix/lib/pkgconfig cc app.c \$(pkg-config --cflags --libs ringcache)"
fi
