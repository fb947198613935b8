#!/usr/bin/python3
"""Connects to an NBD server, sends one NBD_CMD_FLUSH and prints its duration
in seconds. Uses libnbd's Python binding (Debian python3-libnbd).

usage: time_flush.py URI
"""
import sys
import time

try:
    import nbd
except ImportError:
    sys.exit("time_flush.py: python3-libnbd is missing (apt-get install python3-libnbd)")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: time_flush.py URI")
    h = nbd.NBD()
    h.connect_uri(sys.argv[1])
    if not h.can_flush():
        sys.exit("time_flush.py: the server at %s cannot flush" % sys.argv[1])
    start = time.monotonic()
    h.flush()
    elapsed = time.monotonic() - start
    h.shutdown()
    print("%.3f" % elapsed)


if __name__ == "__main__":
    main()
