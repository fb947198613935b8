#!/usr/bin/python3
"""Prints the figures of one fio JSON result (run with group_reporting).

usage: fio_summary.py RESULT.json
output: "<iops> <p99_us> <mean_us>" where iops is read+write IOPS and the
latencies are the completion latencies (clat) of the direction that did I/O
(reads when both did).
"""
import json
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fio_summary.py RESULT.json")
    try:
        with open(sys.argv[1]) as f:
            text = f.read()
        # fio may print warnings before the JSON document.
        doc = json.loads(text[text.index("{"):])
    except (OSError, ValueError) as e:
        sys.exit("fio_summary.py: cannot read fio JSON from %s: %s" % (sys.argv[1], e))
    jobs = doc.get("jobs", [])
    if not jobs:
        sys.exit("fio_summary.py: no jobs in %s" % sys.argv[1])
    iops = 0.0
    lat = None
    errors = 0
    for job in jobs:
        errors += job.get("error", 0)
        for direction in ("read", "write"):
            d = job[direction]
            iops += d["iops"]
            if d["total_ios"] > 0 and lat is None:
                lat = d["clat_ns"]
    if errors:
        sys.exit("fio_summary.py: fio reported error %d in %s" % (errors, sys.argv[1]))
    if lat is None:
        sys.exit("fio_summary.py: fio did no I/O in %s" % sys.argv[1])
    p99 = lat.get("percentile", {}).get("99.000000", 0) / 1000.0
    mean = lat.get("mean", 0) / 1000.0
    print("%.0f %.1f %.1f" % (iops, p99, mean))


if __name__ == "__main__":
    main()
