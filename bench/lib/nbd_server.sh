# Starting and stopping nbdkit servers on Unix sockets, and reading ringcache
# stats files (sourced by bench/nbd_compare.sh, cpu_share.sh, huge_disk.sh).
# The caller sets WORK (a private temp dir) and NBDKIT_THREADS, and installs a
# trap that calls stop_all_nbdkit.
#
# Several servers may run at once, one per NAME (socket $WORK/NAME.sock);
# SERVER_NAME and SERVER_SOCK name the current one, which server_uri uses.

SERVER_NAME=""
SERVER_SOCK=""
declare -A SERVER_PIDS=()   # NAME -> PID of every server still running

# start_nbdkit NAME nbdkit-args...
# Starts `nbdkit -f -t $NBDKIT_THREADS -U SOCK nbdkit-args...` in the
# background, waits until it accepts connections, and makes it current.
start_nbdkit() {
  local name=$1
  shift
  SERVER_NAME=$name
  SERVER_SOCK="$WORK/$name.sock"
  local log="$WORK/$name.nbdkit.log"
  rm -f "$SERVER_SOCK"
  nbdkit -f -t "$NBDKIT_THREADS" -U "$SERVER_SOCK" "$@" >"$log" 2>&1 &
  SERVER_PIDS[$name]=$!
  local i
  for i in $(seq 1 200); do
    if ! kill -0 "${SERVER_PIDS[$name]}" 2>/dev/null; then
      echo "nbdkit ($name) exited at start: nbdkit $*" >&2
      cat "$log" >&2
      unset "SERVER_PIDS[$name]"
      SERVER_NAME=""
      return 1
    fi
    if [ -S "$SERVER_SOCK" ] && nbdinfo --size "nbd+unix:///?socket=$SERVER_SOCK" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  echo "nbdkit ($name) did not open $SERVER_SOCK within 10 s" >&2
  stop_nbdkit "$name"
  return 1
}

# use_nbdkit NAME: makes the running server NAME current.
use_nbdkit() {
  : "${SERVER_PIDS[$1]:?"no nbdkit server named $1 is running"}"
  SERVER_NAME=$1
  SERVER_SOCK="$WORK/$1.sock"
}

server_uri() {
  echo "nbd+unix:///?socket=$SERVER_SOCK"
}

# Stops one server by PID: SIGTERM, then SIGKILL after 60 s. Exiting can
# take seconds: closing a large unlinked cache file frees its extents, and
# with the `discard` mount option that is device I/O.
kill_nbdkit_pid() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "nbdkit (pid $pid) did not exit within 60 s of SIGTERM; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# stop_nbdkit [NAME]: stops server NAME (default: the current one).
stop_nbdkit() {
  local name=${1:-$SERVER_NAME}
  [ -n "$name" ] || return 0
  local pid=${SERVER_PIDS[$name]:-}
  unset "SERVER_PIDS[$name]"
  [ "$name" != "$SERVER_NAME" ] || SERVER_NAME=""
  [ -z "$pid" ] || kill_nbdkit_pid "$pid"
}

stop_all_nbdkit() {
  local n
  for n in "${!SERVER_PIDS[@]}"; do stop_nbdkit "$n"; done
}

# stat_of FILE KEY: the value of KEY in a ringcache stats file
# (RINGCACHE_STATS_FILE: "key=value" pairs separated by spaces).
stat_of() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }
