# Starting and stopping one nbdkit server on a Unix socket (sourced by
# bench/nbd_compare.sh). The caller sets WORK (a private temp dir) and
# NBDKIT_THREADS, and installs a trap that calls stop_nbdkit.

SERVER_PID=""
SERVER_SOCK=""

# start_nbdkit NAME nbdkit-args...
# Starts `nbdkit -f -t $NBDKIT_THREADS -U SOCK nbdkit-args...` in the
# background and waits until it accepts connections.
start_nbdkit() {
  local name=$1
  shift
  SERVER_SOCK="$WORK/$name.sock"
  local log="$WORK/$name.nbdkit.log"
  rm -f "$SERVER_SOCK"
  nbdkit -f -t "$NBDKIT_THREADS" -U "$SERVER_SOCK" "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  local i
  for i in $(seq 1 200); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "nbdkit ($name) exited at start: nbdkit $*" >&2
      cat "$log" >&2
      SERVER_PID=""
      return 1
    fi
    if [ -S "$SERVER_SOCK" ] && nbdinfo --size "nbd+unix:///?socket=$SERVER_SOCK" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  echo "nbdkit ($name) did not open $SERVER_SOCK within 10 s" >&2
  stop_nbdkit
  return 1
}

server_uri() {
  echo "nbd+unix:///?socket=$SERVER_SOCK"
}

# Stops the server started last (by its PID): SIGTERM, then SIGKILL after
# 60 s. Exiting can take seconds: closing a large unlinked cache file frees
# its extents, and with the `discard` mount option that is device I/O.
stop_nbdkit() {
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=""
  kill "$pid" 2>/dev/null || true
  local i
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
