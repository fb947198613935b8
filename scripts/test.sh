#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds, then runs
#   1. every test target (unit, C API, model, faults, nbdkit integration),
#   2. the unit, C API and model tests again under ASan+UBSan and TSan.
# Prints one line per test target and ends with "N passed, N failed".
# RINGCACHE_LONG=1 runs the long variants (with longer test timeouts);
# RINGCACHE_NO_SANITIZERS=1 skips step 2.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

# nbdsh needs Debian's python3 with the nbd module.
export PATH=/usr/bin:$PATH

log=$(mktemp -d "${TMPDIR:-/tmp}/ringcache-test.XXXXXX")
bazel_flags=(--noshow_progress --color=no --curses=no)
test_flags=(--test_output=errors --test_summary=short --keep_going
            --test_env=RINGCACHE_LONG="${RINGCACHE_LONG:-}" --test_env=PATH)
# The long variants run for many minutes (model_test under TSan longest).
[[ "${RINGCACHE_LONG:-}" == 1 ]] && test_flags+=(--test_timeout=900,1800,3600,7200)

run_suite() {   # name, then bazel args
  local name=$1
  shift
  echo "== $name: bazel test $*"
  bazel test "${bazel_flags[@]}" "${test_flags[@]}" "$@" >"$log/$name.log" 2>&1
  local rc=$?
  grep -E '^//[^ ]+ +(\(cached\) )?(PASSED|FAILED|TIMEOUT|NO STATUS|FLAKY|SKIPPED|FAILED TO BUILD|INCOMPLETE)' \
    "$log/$name.log" | sed "s/^/[$name] /" | tee -a "$log/summary"
  # Bazel exits 3 when everything built and some test failed; any other
  # failure means something did not build (or bazel itself failed). A target
  # no test depends on (the benchmarks, the C examples) has no line of its
  # own above, so the build failure gets one.
  if ((rc != 0 && rc != 3)) &&
     ! grep -qE "^\[$name\] //[^ ]+ +(FAILED TO BUILD|NO STATUS)" "$log/summary"; then
    grep -E 'ERROR|error:' "$log/$name.log" | head -n 30
    echo "[$name] //build FAILED TO BUILD" | tee -a "$log/summary"
  fi
  if ((rc != 0)); then
    grep -vE 'linux-sandbox' "$log/$name.log" | grep -B2 -A40 -E '^(FAIL|==================== Test output)' | head -n 200
    # What failed, from each failed test's own log; printed again at the end,
    # where a truncated CI log still shows it.
    local t
    for t in $(grep -oE '\(see [^)]+/test\.log\)' "$log/$name.log" | sed -E 's/^\(see //; s/\)$//' | sort -u); do
      {
        echo "[$name] ${t#*/testlogs/}:"
        grep -E -A12 'Failure$|^\[  FAILED  \]|^WARNING: ThreadSanitizer|^==[0-9]+==ERROR|runtime error:|^SUMMARY:|-- Test timed out' "$t" |
          grep -vE '^\[  FAILED  \] [0-9]+ tests?, listed below' | head -n 60
      } >>"$log/failures"
    done
  fi
}

touch "$log/summary"
run_suite all //...
if [[ -z "${RINGCACHE_NO_SANITIZERS:-}" ]]; then
  sanitized=(//tests/engine/... //tests/capi/...)
  run_suite asan --config=asan -- "${sanitized[@]}" -//tests/capi:exported_symbols_test
  run_suite tsan --config=tsan -- "${sanitized[@]}" -//tests/capi:exported_symbols_test
fi

if [[ -s "$log/failures" ]]; then
  echo "== what failed"
  cat "$log/failures"
fi
passed=$(grep -cE ' PASSED' "$log/summary")
failed=$(grep -cE ' (FAILED|TIMEOUT|NO STATUS|INCOMPLETE)' "$log/summary")
echo "logs: $log"
echo "$passed passed, $failed failed"
((failed == 0))
