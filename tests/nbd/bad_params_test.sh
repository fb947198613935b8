#!/bin/bash
# Every bad parameter is refused at startup: nbdkit exits non-zero before
# serving, and the error names the parameter. Good values of every key are
# accepted (so that the refusals are not a blanket failure).
source "$(dirname "$0")/lib.sh"

# try EXPECT KEY=VALUE... : EXPECT is "ok" or the text the error must contain.
try() {
  local expect="$1"; shift
  local rc=0
  TMPDIR="$WORK" timeout 20 nbdkit -U - --filter="$FILTER" memory 1M "$@" \
    --run 'exit 0' >"$WORK/out" 2>&1 || rc=$?
  if [[ "$expect" == ok ]]; then
    [[ $rc -eq 0 ]] || { cat "$WORK/out" >&2; fail "refused good parameters: $*"; }
    return 0
  fi
  [[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$WORK/out" >&2; fail "accepted bad parameters: $* (rc $rc)"; }
  grep -qF -- "$expect" "$WORK/out" ||
    fail "error for '$*' does not name '$expect': $(cat "$WORK/out")"
  echo "refused $*: $(grep -m1 error "$WORK/out" || head -1 "$WORK/out")"
}

try cache cache=bogus
try cache cache=
try cache cache=WRITEBACK
for v in 1000 3000 12K 2048 8G abc -64K 64Q ""; do
  try cache-min-block-size cache-min-block-size="$v"
done
for v in 100K 1023K abc -1 1.5M ""; do
  try cache-max-size cache-max-size="$v"
done
for key in cache-high-threshold cache-low-threshold; do
  for v in 0 abc -5 99999999999 ""; do
    try "$key" "$key=$v"
  done
done
try cache-low-threshold cache-max-size=10M cache-high-threshold=80 cache-low-threshold=95
try cache-low-threshold cache-max-size=10M cache-high-threshold=80 cache-low-threshold=80
for v in maybe 2 "" relative/path; do
  try cache-on-read cache-on-read="$v"
done
for v in abc 0 3 131072 -4; do try shards shards="$v"; done
for v in abc 0 3 100000; do try queue-depth queue-depth="$v"; done
for v in maybe ""; do try direct-io direct-io="$v"; done
for v in wait WRITE ""; do try fill-overflow fill-overflow="$v"; done
for v in abc 0 -1 100000; do try workers workers="$v"; done
try cache-dir cache-dir=
try "$WORK/no-such-dir" cache-dir="$WORK/no-such-dir"
touch "$WORK/a-file"
try "$WORK/a-file" cache-dir="$WORK/a-file"

# In nbdkit's words: for each bad value of one of nbdkit's keys, the error
# nbdkit's own cache filter gives (what follows "error: ") is part of
# ringcache's, so a script that matches nbdkit's message matches ours.
same_words() {
  local theirs
  if TMPDIR="$WORK" timeout 20 nbdkit -U - --filter=cache memory 1M "$@" --run 'exit 0' \
       >"$WORK/theirs" 2>&1; then
    fail "nbdkit's cache filter accepted $*"
  fi
  theirs=$(sed -n 's/^nbdkit: .*error: //p' "$WORK/theirs" | head -n 1)
  [[ -n "$theirs" ]] || fail "no error line from nbdkit's cache filter for $*: $(cat "$WORK/theirs")"
  if TMPDIR="$WORK" timeout 20 nbdkit -U - --filter="$FILTER" memory 1M "$@" --run 'exit 0' \
       >"$WORK/ours" 2>&1; then
    fail "ringcache accepted $*"
  fi
  grep -qF -- "$theirs" "$WORK/ours" ||
    fail "for '$*' nbdkit says '$theirs'; ringcache says: $(cat "$WORK/ours")"
}
for p in cache=bogus cache= \
         cache-min-block-size=3000 cache-min-block-size=8G cache-min-block-size=abc \
         cache-min-block-size=-64K cache-min-block-size=64Q cache-min-block-size=1.5M \
         cache-max-size=100K cache-max-size=abc cache-max-size= cache-max-size=99999999999999999999 \
         cache-max-size=9999999999E \
         cache-high-threshold=0 cache-high-threshold=abc cache-high-threshold=-5 \
         cache-high-threshold= cache-high-threshold=99999999999 cache-high-threshold=12x \
         cache-low-threshold=0 cache-on-read=maybe cache-on-read=; do
  same_words "$p"
done
same_words cache-max-size=10M cache-high-threshold=80 cache-low-threshold=95
echo "every refusal of one of nbdkit's keys contains nbdkit's own message"

# Good values, each key.
try ok cache=writeback cache=writethrough cache=unsafe
try ok cache-min-block-size=4096 cache-min-block-size=1M
try ok cache-max-size=1M cache-high-threshold=90 cache-low-threshold=10
try ok cache-on-read=true cache-on-read=off cache-on-read=/no/such/file
try ok shards=1 shards=64 queue-depth=4 queue-depth=256 workers=2 direct-io=false
try ok cache-dir="$WORK"
try ok direct-io=true cache-dir="$WORK"
try ok fill-overflow=skip fill-overflow=write
# A threshold order that is only checked when cache-max-size is set, as in nbdkit.
try ok cache-high-threshold=10 cache-low-threshold=50

# A disk whose block map (2 bytes per block) cannot be held in memory: each
# connection is refused with an error that says why, and the server lives on
# (a C++ exception reaching nbdkit's C frames used to abort it).
start_nbdkit huge --filter="$FILTER" null 1E cache-max-size=1G cache-dir="$WORK"
for i in 1 2; do
  if timeout 30 nbdinfo --size "$(uri huge)" >"$WORK/huge.out" 2>&1; then
    fail "a 1E disk was served: $(cat "$WORK/huge.out")"
  fi
done
kill -0 "$(pid_of huge)" 2>/dev/null || fail "nbdkit died on a 1E disk: $(cat "$WORK/huge.log")"
grep -q "does not fit in memory" "$WORK/huge.log" ||
  fail "the error for a 1E disk does not say why: $(cat "$WORK/huge.log")"
echo "refused a 1E disk: $(grep -m1 'does not fit' "$WORK/huge.log")"
stop_nbdkit huge
echo PASS
