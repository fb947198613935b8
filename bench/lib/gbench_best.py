#!/usr/bin/python3
"""Prints the best IOPS counter among the Google Benchmark JSON results whose
name matches a regular expression (each shape's median, when the run had
repetitions), the thread count that reached it and the reads in flight per
thread (the `depth` argument; 1 for a synchronous run). Fails if that result
counted misses or reads that left the fast path.

usage: gbench_best.py RESULT.json REGEX    output: "<iops> <threads> <depth>"
"""
import json
import re
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gbench_best.py RESULT.json REGEX")
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    pattern = re.compile(sys.argv[2])
    results = [b for b in doc.get("benchmarks", []) if pattern.search(b.get("name", ""))]
    for b in results:
        if b.get("error_occurred"):
            sys.exit("gbench_best.py: %s failed: %s" % (b["name"], b.get("error_message", "")))
    # With --benchmark_repetitions, each shape's median over its repetitions:
    # the best of single short samples would favour the noisiest shape.
    medians = [b for b in results
               if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"]
    if medians:
        results = medians
    best = None
    for b in results:
        if "IOPS" in b and (best is None or b["IOPS"] > best["IOPS"]):
            best = b
    if best is None:
        sys.exit("gbench_best.py: no result with an IOPS counter matches %s" % sys.argv[2])
    # A hit benchmark that missed, or whose reads left the fast path, would
    # not measure what it claims.
    for counter in ("misses", "worker_reads"):
        if best.get(counter, 0) > 0:
            sys.exit("gbench_best.py: %s has %s=%g: not all reads were cache hits"
                     % (best["name"], counter, best[counter]))
    depth = re.search(r"/depth:(\d+)", best["name"])
    print("%.0f %d %s" % (best["IOPS"], best.get("threads", 1), depth.group(1) if depth else "1"))


if __name__ == "__main__":
    main()
