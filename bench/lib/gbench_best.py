#!/usr/bin/python3
"""Prints the best IOPS counter among the Google Benchmark JSON results whose
name matches a regular expression, the thread count that reached it and the
reads in flight per thread (the `depth` argument; 1 for a synchronous run).

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
    best = None
    for b in doc.get("benchmarks", []):
        if not pattern.search(b.get("name", "")):
            continue
        if b.get("error_occurred"):
            sys.exit("gbench_best.py: %s failed: %s" % (b["name"], b.get("error_message", "")))
        if "IOPS" in b and (best is None or b["IOPS"] > best["IOPS"]):
            best = b
    if best is None:
        sys.exit("gbench_best.py: no result with an IOPS counter matches %s" % sys.argv[2])
    depth = re.search(r"/depth:(\d+)", best["name"])
    print("%.0f %d %s" % (best["IOPS"], best.get("threads", 1), depth.group(1) if depth else "1"))


if __name__ == "__main__":
    main()
