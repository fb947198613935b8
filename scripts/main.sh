#!/usr/bin/env bash
# The main job: install what is missing, build, then run the demo
# (nbdkit + ringcache in front of a slow origin, real parallel I/O, stats).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=/usr/bin:$PATH
exec bash scripts/demo.sh "$@"
