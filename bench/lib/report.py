#!/usr/bin/python3
"""Turns the figures of bench/nbd_compare.sh into one line per job (both
figures and the ratio), a CSV for the plot, and a verdict per target.

usage: report.py CSV RUNTIME DELAY  < figures
figures: lines "ROW.VARIANT.METRIC VALUE", VARIANT in passthrough, nbdkit,
ringcache, raw (raw fio, for the engine row).
"""
import csv
import sys

# (job, label, unit, row, metric, baseline variant, higher_is_better, target ratio)
# ratio = ringcache advantage: ringcache/baseline when higher is better,
# baseline/ringcache when lower is better (times, latencies).
JOBS = [
    ("cold_64k_randread", "cold 64K random reads, 8x8, slow origin", "IOPS",
     "cold", "iops", "nbdkit", True, 20.0),
    ("writeback_flush", "write-back flush of the dirty 64K blocks", "s",
     "flush", "seconds", "nbdkit", False, 20.0),
    ("writethrough_4k_randwrite", "writethrough 4K random writes, 4x16, slow origin", "IOPS",
     "writethrough", "iops", "nbdkit", True, 20.0),
    ("warm_4k_randread", "warm 4K random reads (hits), 4x16", "IOPS",
     "warm", "iops", "nbdkit", True, 1.0),
    ("warm_4k_randread_p99", "warm 4K hits, p99 completion latency", "us",
     "warm", "p99_us", "nbdkit", False, 4.0),
    ("reclaim_64k_randread", "reclaim: 64K random reads over 1G, max 256M", "IOPS",
     "reclaim", "iops", "nbdkit", True, 2.0),
    ("engine_4k_hits_vs_raw_fio", "engine API 4K hits vs raw fio io_uring O_DIRECT", "IOPS",
     "engine", "iops", "raw", True, 0.8),
]
# Extra target: cold misses >= 0.7x of the pass-through figure.
COLD_VS_PASSTHROUGH = 0.7


def ratio(rc, base, higher_is_better):
    if rc is None or base is None:
        return None
    if higher_is_better:
        return rc / base if base > 0 else None
    return base / rc if rc > 0 else None


def fmt(x, unit=""):
    if x is None:
        return "-"
    if unit == "s":
        return "%.3f" % x
    if unit == "ratio":
        return "%.2fx" % x
    return "%.0f" % x if x >= 100 else "%.1f" % x


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: report.py CSV RUNTIME DELAY < figures")
    csv_path, runtime, delay = sys.argv[1:]
    fig = {}
    for line in sys.stdin:
        key, _, value = line.strip().partition(" ")
        if key and value:
            try:
                fig[key] = float(value)
            except ValueError:
                sys.exit("report.py: figure %s is not a number: %r" % (key, value))

    rows = []
    print("%-58s %12s %12s %9s %8s %12s %9s" %
          ("job (per-job runtime %ss, slow origin %s)" % (runtime, delay),
           "baseline", "ringcache", "ratio", "target", "passthru", "rc/pass"))
    for job, label, unit, row, metric, base_variant, higher, target in JOBS:
        base = fig.get("%s.%s.%s" % (row, base_variant, metric))
        rc = fig.get("%s.ringcache.%s" % (row, metric))
        passthrough = fig.get("%s.passthrough.%s" % (row, metric))
        if base is None and rc is None:
            continue
        r = ratio(rc, base, higher)
        rc_vs_pass = ratio(rc, passthrough, higher)
        pass_vs_base = ratio(passthrough, base, higher)
        met = None if r is None else r >= target
        if job == "cold_64k_randread" and met is not None and rc_vs_pass is not None:
            met = met and rc_vs_pass >= COLD_VS_PASSTHROUGH
        base_name = "raw fio" if base_variant == "raw" else "nbdkit cache"
        note = ""
        if row == "flush":
            note = " (%s dirty blocks)" % fmt(fig.get("flush.nbdkit.dirty_64k_blocks",
                                                     fig.get("flush.ringcache.dirty_64k_blocks")))
        if row == "cold" and fig.get("cold.ringcache.misses"):
            misses = fig["cold.ringcache.misses"]
            cached = fig.get("cold.ringcache.blocks_cached", 0)
            note = " (ringcache cached %s of its %s misses, %.0f%%, %s skipped as its fill writer"\
                   " was full; nbdkit's filter caches every miss)" % (
                       fmt(cached), fmt(misses), 100.0 * cached / misses,
                       fmt(fig.get("cold.ringcache.fills_skipped", 0)))
        if row == "engine":
            note = " (best of the sweep: %d threads x %d in flight)" % (
                fig.get("engine.ringcache.threads") or 0, fig.get("engine.ringcache.depth") or 0)
        verdict = "" if met is None else ("  MET" if met else "  MISSED")
        print("%-58s %12s %12s %9s %8s %12s %9s%s%s" %
              ("%s [%s]" % (label, unit), fmt(base, unit), fmt(rc, unit), fmt(r, "ratio"),
               ">=%gx" % target, fmt(passthrough, unit), fmt(rc_vs_pass, "ratio"), verdict, note))
        rows.append({
            "job": job, "unit": unit, "baseline": base_name,
            "baseline_value": "" if base is None else "%g" % base,
            "ringcache": "" if rc is None else "%g" % rc,
            "ratio": "" if r is None else "%.3f" % r,
            "target": "%g" % target,
            "met": "" if met is None else ("yes" if met else "no"),
            "passthrough": "" if passthrough is None else "%g" % passthrough,
            "ringcache_vs_passthrough": "" if rc_vs_pass is None else "%.3f" % rc_vs_pass,
            "passthrough_ratio": "" if pass_vs_base is None else "%.3f" % pass_vs_base,
        })
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["job"])
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
