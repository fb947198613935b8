#!/usr/bin/python3
"""The client of load_test.sh: CONNS connections, one thread each, for SECS.

  load_client.py URI ORIGIN CONNS SECS SEED

Connection i owns bytes [i*R, (i+1)*R) of the disk (R = size / CONNS) and
keeps a model of them, loaded from the ORIGIN file at start (the caller makes
sure the origin is up to date: a fresh file, or the previous run flushed). It
sends a random mix of reads (checked byte for byte against the model),
writes, zeroes, flushes and cache (prefetch) requests of random sizes and
alignments inside its region. At the end it flushes and checks that the
origin file equals every model. Prints one line of figures; exits 1 on any
error or mismatch.
"""
import os
import random
import sys
import threading
import time

import nbd


def run_conn(uri, i, region, model, deadline, seed, totals, lock):
    rnd = random.Random(seed * 1000 + i)
    start, length = region
    counts = {"read": 0, "write": 0, "zero": 0, "flush": 0, "cache": 0}
    mismatches = errors = 0
    nbytes = 0
    first_error = ""
    h = nbd.NBD()
    try:
        h.connect_uri(uri)
        while time.monotonic() < deadline:
            # Mostly small requests, some large; offsets unaligned half the time.
            n = rnd.choice((512, 4096, 65536, 131072)) if rnd.random() < 0.5 \
                else rnd.randint(1, 200000)
            n = min(n, length)
            off = rnd.randint(0, length - n)
            if rnd.random() < 0.5:
                off &= ~4095
            op = rnd.random()
            if op < 0.45:
                got = h.pread(n, start + off)
                counts["read"] += 1
                if got != bytes(model[off:off + n]):
                    mismatches += 1
                    if not first_error:
                        bad = next(k for k in range(n) if got[k] != model[off + k])
                        first_error = "conn %d: read of %d at %d: wrong byte at %d" % (
                            i, n, start + off, start + off + bad)
            elif op < 0.80:
                data = rnd.randbytes(n)
                h.pwrite(data, start + off)
                model[off:off + n] = data
                counts["write"] += 1
            elif op < 0.85:
                h.zero(n, start + off)
                model[off:off + n] = bytes(n)
                counts["zero"] += 1
            elif op < 0.92:
                h.cache(n, start + off)
                counts["cache"] += 1
            else:
                h.flush()
                counts["flush"] += 1
            nbytes += n
        h.flush()
        counts["flush"] += 1
    except Exception as e:  # nbd.Error, or anything else: counted, never lost with the thread
        errors += 1
        first_error = first_error or "conn %d: %s: %s" % (i, type(e).__name__, e)
    finally:
        try:
            h.shutdown()
        except nbd.Error:
            pass
    with lock:
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        totals["mismatches"] += mismatches
        totals["errors"] += errors
        totals["bytes"] += nbytes
        if first_error:
            totals["first_errors"].append(first_error)


def main():
    uri, origin, conns, secs, seed = sys.argv[1:6]
    conns, secs, seed = int(conns), float(secs), int(seed)
    with open(origin, "rb") as f:
        disk = f.read()
    size = len(disk)
    r = size // conns
    regions = [(i * r, r) for i in range(conns)]
    models = [bytearray(disk[s:s + n]) for s, n in regions]
    totals = {"mismatches": 0, "errors": 0, "bytes": 0, "first_errors": []}
    lock = threading.Lock()
    deadline = time.monotonic() + secs
    threads = [threading.Thread(target=run_conn,
                                args=(uri, i, regions[i], models[i], deadline, seed, totals, lock))
               for i in range(conns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    # Every connection flushed at its end: the origin must equal the models.
    with open(origin, "rb") as f:
        disk = f.read()
    origin_bad = sum(1 for (s, n), m in zip(regions, models) if disk[s:s + n] != bytes(m))
    ops = sum(totals[k] for k in ("read", "write", "zero", "flush", "cache"))
    print("ops=%d reads=%d writes=%d zeroes=%d flushes=%d caches=%d MiB=%d secs=%.1f "
          "errors=%d mismatches=%d origin_regions_wrong=%d"
          % (ops, totals["read"], totals["write"], totals["zero"], totals["flush"],
             totals["cache"], totals["bytes"] >> 20, elapsed, totals["errors"],
             totals["mismatches"], origin_bad))
    for e in totals["first_errors"][:10]:
        print("  " + e)
    if totals["errors"] or totals["mismatches"] or origin_bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
