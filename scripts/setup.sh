#!/usr/bin/env bash
# The one place that installs what ringcache needs (Debian 12, as root).
# Idempotent and quiet: installs only missing packages; fails loudly.
# Extra packages to install may be named as arguments (bench/cpu_share.sh
# asks for linux-perf this way).
set -euo pipefail

packages=(
  build-essential bazel-bootstrap pkg-config
  liburing-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  nbdkit nbdkit-plugin-dev libnbd-bin python3-libnbd fio qemu-utils
  gnuplot-nox util-linux e2fsprogs procps
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: missing packages: ${missing[*]}; run as root (or with sudo) to install them" >&2
  exit 1
fi

echo "setup.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >/tmp/ringcache-apt.log 2>&1; then
  cat /tmp/ringcache-apt.log >&2
  echo "setup.sh: apt-get update failed" >&2
  exit 1
fi
if ! apt-get install -y -qq "${missing[@]}" >>/tmp/ringcache-apt.log 2>&1; then
  tail -n 30 /tmp/ringcache-apt.log >&2
  echo "setup.sh: apt-get install failed (log: /tmp/ringcache-apt.log)" >&2
  exit 1
fi
echo "setup.sh: done" >&2
