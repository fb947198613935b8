# Shared helpers for the ringcache nbdkit integration tests.
#
# Source it from a test script (bash). It gives:
#   FILTER        absolute path of nbdkit-ringcache-filter.so
#   WORK          a fresh temporary directory, removed on exit
#   start_nbdkit NAME [nbdkit args...]   nbdkit on $WORK/NAME.sock in the
#                 foreground mode (-f) in the background, stderr in
#                 $WORK/NAME.log, stats in $WORK/NAME.stats; waits until it
#                 serves. Sets PID_<NAME> and SOCK_<NAME>.
#   start_nbdkit_daemon NAME [args...]   the same but lets nbdkit daemonise
#                 (fork, chdir /) as it does in production.
#   stop_nbdkit NAME    SIGTERM by PID, wait for exit (SIGKILL after 10 s).
#   uri NAME            nbd+unix:///?socket=...
#   stat_of NAME KEY    a value from the filter's RINGCACHE_STATS_FILE
#   nbdsh_on NAME       nbdsh connected to NAME, Python from stdin
#   fail MESSAGE        print and exit 1
# Every nbdkit started here is killed by PID when the test exits, whatever
# happens. All client commands run under `timeout` so that nothing hangs.
set -euo pipefail

# nbdsh needs Debian's python3 with the nbd module.
export PATH="/usr/bin:$PATH"

_find_filter() {
  local candidates=()
  [[ -n "${RINGCACHE_FILTER:-}" ]] && candidates+=("$RINGCACHE_FILTER")
  [[ -n "${TEST_SRCDIR:-}" ]] &&
    candidates+=("$TEST_SRCDIR/${TEST_WORKSPACE:-ringcache}/nbdkit_adapter/nbdkit-ringcache-filter.so")
  candidates+=("$PWD/nbdkit_adapter/nbdkit-ringcache-filter.so"
               "$PWD/bazel-bin/nbdkit_adapter/nbdkit-ringcache-filter.so")
  local c
  for c in "${candidates[@]}"; do
    if [[ -f "$c" ]]; then realpath "$c"; return 0; fi
  done
  echo "lib.sh: nbdkit-ringcache-filter.so not found (bazel build //nbdkit_adapter:nbdkit-ringcache-filter.so)" >&2
  return 1
}
FILTER="$(_find_filter)"
TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Unix socket paths must stay under 108 bytes, so not under TEST_TMPDIR.
WORK="$(mktemp -d /tmp/ringcache-nbd.XXXXXX)"
_NBDKIT_NAMES=()

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

_cleanup() {
  local rc=$?
  local name pid
  for name in "${_NBDKIT_NAMES[@]}"; do
    pid="$(_pid_of "$name")"
    [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then
    for log in "$WORK"/*.log; do
      [[ -s "$log" ]] || continue
      echo "---- $log (last 30 lines) ----" >&2
      tail -n 30 "$log" >&2
    done
  fi
  rm -rf "$WORK"
  exit $rc
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

_pid_of() {
  local file="$WORK/$1.pid"
  [[ -s "$file" ]] && cat "$file" || true
}

uri() { echo "nbd+unix:///?socket=$WORK/$1.sock"; }
sock() { echo "$WORK/$1.sock"; }
pid_of() { _pid_of "$1"; }

# Waits until nbdkit NAME wrote its pidfile (it does so once it listens).
_wait_ready() {
  local name="$1" starter_pid="$2" i
  for ((i = 0; i < 200; i++)); do
    if [[ -s "$WORK/$name.pid" && -S "$WORK/$name.sock" ]]; then return 0; fi
    # (A daemonising nbdkit's starter exits at once: starter_pid is empty.)
    if [[ -n "$starter_pid" ]] && ! kill -0 "$starter_pid" 2>/dev/null &&
       [[ ! -s "$WORK/$name.pid" ]]; then
      wait "$starter_pid" 2>/dev/null || true
      cat "$WORK/$name.log" >&2 || true
      fail "nbdkit $name exited during startup"
    fi
    sleep 0.05
  done
  cat "$WORK/$name.log" >&2 || true
  fail "nbdkit $name did not start within 10 s"
}

start_nbdkit() {
  local name="$1"; shift
  _NBDKIT_NAMES+=("$name")
  rm -f "$WORK/$name.sock" "$WORK/$name.pid"
  RINGCACHE_STATS_FILE="$WORK/$name.stats" \
    nbdkit -f -U "$WORK/$name.sock" -P "$WORK/$name.pid" "$@" \
    >"$WORK/$name.log" 2>&1 &
  local starter=$!
  disown "$starter"   # no "Killed" job notices from bash at cleanup
  _wait_ready "$name" "$starter"
}

start_nbdkit_daemon() {
  local name="$1"; shift
  _NBDKIT_NAMES+=("$name")
  rm -f "$WORK/$name.sock" "$WORK/$name.pid"
  RINGCACHE_STATS_FILE="$WORK/$name.stats" \
    nbdkit -U "$WORK/$name.sock" -P "$WORK/$name.pid" "$@" \
    >"$WORK/$name.log" 2>&1 &
  local starter=$!
  wait "$starter" || { cat "$WORK/$name.log" >&2; fail "nbdkit $name failed to start"; }
  _wait_ready "$name" ""
}

stop_nbdkit() {
  local name="$1" pid i
  pid="$(_pid_of "$name")"
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$WORK/$name.pid"; return 0; }
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$WORK/$name.pid"
  fail "nbdkit $name did not exit within 10 s of SIGTERM"
}

stat_of() {
  local file="$WORK/$1.stats"
  [[ -f "$file" ]] || fail "no stats file $file"
  local v
  v="$(sed -n "s/^$2=//p" "$file")"
  [[ -n "$v" ]] || fail "stats file $file has no $2"
  echo "$v"
}

nbdsh_on() {
  local name="$1"; shift
  timeout 120 nbdsh -u "$(uri "$name")" "$@" -c -
}

# The cache file that nbdkit NAME holds open under DIR (a /proc fd link).
cache_fd_of() {
  local name="$1" dir="$2" pid fd
  pid="$(_pid_of "$name")"
  for fd in /proc/"$pid"/fd/*; do
    if [[ "$(readlink "$fd" 2>/dev/null)" == "$dir"/* ]]; then echo "$fd"; return 0; fi
  done
  return 1
}

# A file of SIZE bytes of seeded pseudo-random data (nbdkit's random
# plugin), so that misplaced or stale data cannot compare equal.
make_random() {
  local path="$1" size="$2" seed="${3:-1}"
  rm -f "$path"
  timeout 60 nbdcopy -- [ nbdkit random "$size" seed="$seed" ] "$path"
}
