#!/bin/bash
# Capability parity with nbdkit's cache filter: for every mode and a range of
# plugins below (file, memory, multi-conn disabled, FUA none/emulate, block
# size constraints, read-only), ringcache answers get_size, can_flush,
# can_fua, can_multi_conn, can_cache, can_fast_zero, is_read_only and the
# block size constraints exactly as `--filter=cache` does in the installed
# nbdkit. can_zero and can_trim are deliberately always on (docs).
source "$(dirname "$0")/lib.sh"

truncate -s 3M "$WORK/disk.img"
probe='
import json
mn, pf, mx = (h.get_block_size(k) for k in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM))
print(json.dumps(dict(size=h.get_size(), flush=h.can_flush(), fua=h.can_fua(),
    multi_conn=h.can_multi_conn(), cache=h.can_cache(), fast_zero=h.can_fast_zero(),
    read_only=h.is_read_only(), zero=h.can_zero(), trim=h.can_trim(),
    block_size=[mn, pf, mx]), sort_keys=True))
'
answers() {  # filter-spec nbdkit-args...
  local filter="$1"; shift
  TMPDIR="$WORK" timeout 60 nbdkit -U - --filter="$filter" "$@" \
    --run 'nbdsh -u "$uri" -c "$PROBE"' 2>"$WORK/probe.err" || {
      cat "$WORK/probe.err" >&2; fail "nbdkit $filter $* failed"; }
}
export PROBE="$probe"

setups=(
  "file $WORK/disk.img"
  "memory 5M"
  "--filter=multi-conn memory 1M multi-conn-mode=disable"
  "--filter=fua memory 1M"
  "--filter=fua memory 1M fuamode=discard"
  "--filter=fua memory 1M fuamode=emulate"
  "--filter=fua memory 1M fuamode=native"
  "--filter=blocksize-policy memory 1M blocksize-minimum=512 blocksize-preferred=4096 blocksize-maximum=1M"
  "--filter=blocksize-policy memory 1M blocksize-minimum=4096 blocksize-preferred=4096 blocksize-maximum=32768"
  "-r file $WORK/disk.img"
)
n=0
for mode in writeback writethrough unsafe; do
  for setup in "${setups[@]}"; do
    # shellcheck disable=SC2086
    ref="$(answers cache $setup cache="$mode")"
    # shellcheck disable=SC2086
    got="$(answers "$FILTER" $setup cache="$mode")"
    strip='import json,sys; d=json.loads(sys.stdin.read()); d.pop("zero"); d.pop("trim"); print(json.dumps(d, sort_keys=True))'
    if [[ "$(/usr/bin/python3 -c "$strip" <<<"$ref")" != "$(/usr/bin/python3 -c "$strip" <<<"$got")" ]]; then
      fail "cache=$mode $setup: nbdkit cache filter says $ref, ringcache says $got"
    fi
    [[ "$got" == *'"read_only": true'* ]] ||
      [[ "$got" == *'"trim": true'* && "$got" == *'"zero": true'* ]] ||
      fail "cache=$mode $setup: ringcache should advertise zero and trim: $got"
    n=$((n + 1))
  done
done
echo "$n setups agree with nbdkit's cache filter"
echo PASS
