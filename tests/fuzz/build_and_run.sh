#!/bin/bash
# Builds the C API fuzzer (tests/fuzz/capi_fuzzer.cc + engine/ + capi/) with
# Debian's clang-14, -fsanitize=fuzzer,address,undefined, outside Bazel (whose
# default toolchain is gcc), and runs it.
#
#   tests/fuzz/build_and_run.sh build           build only; prints the binary
#   tests/fuzz/build_and_run.sh test [SECONDS]  bounded run (default 40 s, or
#        $RINGCACHE_FUZZ_SECONDS; RINGCACHE_LONG=1: 600 s) over a copy of the
#        corpus: the tree is not touched. This is what the test suite runs.
#   tests/fuzz/build_and_run.sh run [LIBFUZZER ARGS...]
#        a run by hand that adds what it finds to tests/fuzz/corpus/, e.g.
#        tests/fuzz/build_and_run.sh run -max_total_time=3600 -jobs=2 -workers=2
#   tests/fuzz/build_and_run.sh merge
#        minimises tests/fuzz/corpus/ in place (keeps the inputs that add
#        coverage; run it after a long "run").
#   tests/fuzz/build_and_run.sh repro FILE      runs one input (a crash file)
#
# The build is kept in $RINGCACHE_FUZZ_BUILD (default
# /var/tmp/ringcache-fuzz-$UID/<hash of the sources>) and redone only when a
# source changes. It links -luring and the absl libraries listed in
# third_party/system/BUILD.
set -euo pipefail

# The source tree: this script's real location (under Bazel, runfiles are
# symlinks into the tree; the test is tagged "local").
ROOT="$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/../.." && pwd)"
FUZZ_DIR="$ROOT/tests/fuzz"
CORPUS="$FUZZ_DIR/corpus"

CXX="${CXX_FUZZ:-}"
if [[ -z "$CXX" ]]; then
  for c in clang++-14 clang++; do
    if command -v "$c" >/dev/null; then CXX="$c"; break; fi
  done
fi
[[ -n "$CXX" ]] || { echo "build_and_run.sh: clang++ not found (apt-get install clang-14)" >&2; exit 1; }

SOURCES=("$ROOT"/engine/*.cc "$ROOT"/capi/*.cc)
SANITIZE="address,undefined"
CXXFLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer -pthread -I"$ROOT" -I/usr/include
          -fno-sanitize-recover=undefined -DRINGCACHE_FUZZ)
# The absl libraries the Bazel build links, in its order.
mapfile -t LIBS < <(grep -o '"-l[^"]*"' "$ROOT/third_party/system/BUILD" | tr -d '"' | awk '!seen[$0]++')
LIBS=(-luring "${LIBS[@]}")

build() {
  local key dir obj objs=() src
  key="$( { "$CXX" --version | head -n1; echo "${CXXFLAGS[*]} $SANITIZE ${LIBS[*]}";
            cat "${SOURCES[@]}" "$ROOT"/engine/*.h "$ROOT"/capi/*.h "$FUZZ_DIR/capi_fuzzer.cc"; } |
          sha256sum | cut -c1-16)"
  dir="${RINGCACHE_FUZZ_BUILD:-/var/tmp/ringcache-fuzz-$(id -u)}/$key"
  BIN="$dir/capi_fuzzer"
  if [[ -x "$BIN" ]]; then return 0; fi
  mkdir -p "$dir/obj"
  echo "building $BIN with $CXX ..." >&2
  # The library code is instrumented for coverage (fuzzer-no-link) and the
  # sanitizers; the target links libFuzzer's main.
  export CXX SANITIZE
  printf '%s\n' "${SOURCES[@]}" | xargs -P "$(nproc)" -I{} bash -c '
    src={}; rel=${src#'"$ROOT"'/}; obj='"$dir"'/obj/${rel//\//_}.o
    "$CXX" '"${CXXFLAGS[*]}"' -fsanitize=fuzzer-no-link,$SANITIZE -c "$src" -o "$obj"'
  for src in "${SOURCES[@]}"; do
    obj="${src#"$ROOT"/}"
    objs+=("$dir/obj/${obj//\//_}.o")
  done
  "$CXX" "${CXXFLAGS[@]}" -fsanitize=fuzzer,$SANITIZE "$FUZZ_DIR/capi_fuzzer.cc" "${objs[@]}" \
    "${LIBS[@]}" -o "$BIN.tmp"
  mv "$BIN.tmp" "$BIN"
  # Keep the 3 newest builds only (each is ~12 MB).
  ls -td "$(dirname "$dir")"/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
}

# Options every run uses: small inputs (the decoder needs few bytes), a
# per-input time limit far above a normal input's milliseconds (a hang is a
# failure), and the dictionary of parameter strings.
COMMON=(-max_len=2048 -len_control=0 -timeout=20 -rss_limit_mb=4096 -dict="$FUZZ_DIR/capi.dict"
        -print_final_stats=1)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

cmd="${1:-test}"
shift || true
case "$cmd" in
  build)
    build
    echo "$BIN"
    ;;
  test)
    seconds="${1:-${RINGCACHE_FUZZ_SECONDS:-}}"
    if [[ -z "$seconds" ]]; then
      if [[ "${RINGCACHE_LONG:-}" == 1 ]]; then seconds=600; else seconds=40; fi
    fi
    build
    work="$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/capi-fuzz.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/new"
    # New inputs go to $work/new; the kept corpus is read only. Crash files,
    # if any, go to $work and are printed below.
    set +e
    (cd "$work" && "$BIN" "${COMMON[@]}" -max_total_time="$seconds" \
       -artifact_prefix="$work/" "$work/new" "$CORPUS") 2>&1 | tee "$work/log" |
      grep -vE '^#[0-9]+.*(NEW|REDUCE|pulse)|^\s+NEW_FUNC'
    rc=${PIPESTATUS[0]}
    set -e
    for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
      [[ -f "$f" ]] || continue
      echo "artifact $f (base64, save and run: build_and_run.sh repro FILE):"
      base64 "$f"
    done
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$' || true)"
    echo "capi_fuzzer: exit $rc, ${runs:-?} inputs run in ${seconds} s, corpus $(ls "$CORPUS" | wc -l) kept + $(ls "$work/new" | wc -l) new"
    exit "$rc"
    ;;
  run)
    build
    mkdir -p "$CORPUS"
    cd "$FUZZ_DIR"
    exec "$BIN" "${COMMON[@]}" "$@" "$CORPUS"
    ;;
  merge)
    build
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$BIN" "${COMMON[@]}" -merge=1 "$tmp" "$CORPUS"
    rm -f "$CORPUS"/*
    cp "$tmp"/* "$CORPUS"/
    echo "corpus: $(ls "$CORPUS" | wc -l) files"
    ;;
  repro)
    build
    exec "$BIN" "${COMMON[@]}" "$@"
    ;;
  *)
    echo "usage: $0 build|test [SECONDS]|run [ARGS]|merge|repro FILE" >&2
    exit 2
    ;;
esac
