#!/usr/bin/python3
"""Splits a system-wide CPU profile into who spent it, by call stack.

usage: perf script -i perf.data | cpu_buckets.py SECONDS FREQ_HZ REQUESTS

Reads `perf script` output (samples of `perf record -a -g -F FREQ_HZ` over
SECONDS), puts every sample into one bucket, and prints one line per bucket:
share of all samples, CPU seconds, and CPU microseconds per request (REQUESTS:
requests served while perf recorded). The buckets suit bench/cpu_share.sh's
servers: an nbdkit with the pattern plugin (no file I/O of its own), maybe a
cache filter, and fio as the client. First match wins:

  fio (client)           any sample of a fio thread
  ringcache              nbdkit threads with the filter, liburing, Abseil or
                         the kernel's io_uring in the stack, and io-wq workers
  nbdkit cache filter    nbdkit threads with nbdkit-cache-filter.so in the
                         stack, or in a cache-file system call (pread, pwrite,
                         fallocate, fstat: with the pattern plugin only a cache
                         filter makes them, and Debian's filter has no frame
                         pointers, so its frames are often missing)
  origin plugin          nbdkit threads with a *-plugin.so in the stack
  nbdkit server          the rest of nbdkit: sockets, locks, scheduling
  idle / other           the idle task and anything else on the machine
"""
import re
import sys

RINGCACHE = re.compile(r'ringcache|liburing|libabsl|io_uring')
CACHE_FILTER = re.compile(r'nbdkit-cache-filter|sys_pread64|sys_pwrite64|sys_fallocate|sys_newfstat|sys_fstat')
PLUGIN = re.compile(r'-plugin\.so')

ORDER = ['fio (client)', 'nbdkit server', 'origin plugin', 'ringcache', 'nbdkit cache filter',
         'idle', 'other']


def bucket(comm, stack):
    if comm.startswith('fio'):
        return 'fio (client)'
    if comm.startswith('iou-wrk'):
        return 'ringcache'
    if comm.startswith('nbdkit'):
        if RINGCACHE.search(stack):
            return 'ringcache'
        if CACHE_FILTER.search(stack):
            return 'nbdkit cache filter'
        if PLUGIN.search(stack):
            return 'origin plugin'
        return 'nbdkit server'
    if comm.startswith('swapper'):
        return 'idle'
    return 'other'


def samples(lines):
    """Yields (comm, stack text) per sample of `perf script` output."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, '\n'.join(frames)
            comm, frames = None, []
        elif line[0] in ' \t':
            frames.append(line.strip())
        else:
            comm, frames = line.split()[0], []
    if comm is not None:
        yield comm, '\n'.join(frames)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2])
    seconds, freq, requests = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    counts = {}
    for comm, stack in samples(sys.stdin):
        b = bucket(comm, stack)
        counts[b] = counts.get(b, 0) + 1
    total = sum(counts.values())
    if total == 0 or requests <= 0:
        sys.exit('cpu_buckets.py: no samples or no requests')
    print(f'{"who":22s} {"share":>7s} {"CPU s":>7s} {"us/request":>11s}')
    for b in ORDER:
        n = counts.get(b, 0)
        if n == 0:
            continue
        cpu = n / freq
        print(f'{b:22s} {100 * n / total:6.1f}% {cpu:7.3f} {1e6 * cpu / requests:11.2f}')
    print(f'{total} samples over {seconds:g} s at {freq:g} Hz, {requests:.0f} requests')


if __name__ == '__main__':
    main()
