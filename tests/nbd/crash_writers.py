#!/usr/bin/python3
"""Parallel writers for crash_test.sh, and the checker of what survived.

  crash_writers.py init   ORIGIN              the origin, every slot at seq 0
  crash_writers.py write  URI LOG MODE SECS   N writers until SECS pass or
                                              the server dies
  crash_writers.py check  ORIGIN LOG MODE     byte check against the log

Layout: WRITERS writers, each owning SLOTS slots of SLOT bytes at a stride of
STRIDE bytes (so slots are not block-aligned, and neighbouring writers share
cache blocks). A write fills one whole slot with the pattern of (writer, slot,
seq): every 512-byte sector starts with a header naming them, so any sector
of the origin tells which write it came from. seq counts up per slot.

The log (one line per event, appended under a lock, so its order is the
order in which the client saw the events):
  I w s q    write (w, s, q) is about to be issued
  W w s q    write (w, s, q) was acknowledged
  F n        a flush succeeded; n = the number of W lines logged before that
             flush was issued (the writes it must cover)

What must survive in the origin after kill -9 of nbdkit, per sector of a slot:
  writethrough: a seq >= the last acknowledged seq of that slot;
  writeback:    a seq >= the last seq of that slot among the first n W
                lines of the last F line (0 if none);
  and in both:  a seq <= the last issued one (no invented data), and a
                well-formed sector (no torn or foreign bytes).
"""
import os
import struct
import sys
import threading
import time

WRITERS = 8
SLOTS = 12
SLOT = 40 * 1024
STRIDE = 44 * 1024
SECTOR = 512
SIZE = WRITERS * SLOTS * STRIDE
FLUSH_EVERY = 5          # writeback: each writer flushes after every 5 writes
MAGIC = 0x52494E47       # "RING"


def slot_offset(w, s):
    return (w * SLOTS + s) * STRIDE


def sector_bytes(w, s, q, k):
    head = struct.pack("<IHHIH", MAGIC, w, s, q, k)
    body_seed = (w * 7919 + s * 104729 + q * 1299709 + k * 15485863) & 0xFFFFFFFF
    body = (struct.pack("<I", body_seed) * (SECTOR // 4))[: SECTOR - len(head)]
    return head + body


def slot_bytes(w, s, q):
    return b"".join(sector_bytes(w, s, q, k) for k in range(SLOT // SECTOR))


def parse_sector(data):
    """(w, s, q, k) if data is a well-formed sector, else None."""
    magic, w, s, q, k = struct.unpack_from("<IHHIH", data)
    if magic != MAGIC:
        return None
    if data != sector_bytes(w, s, q, k):
        return None
    return w, s, q, k


def init(origin):
    with open(origin, "wb") as f:
        f.truncate(SIZE)
        for w in range(WRITERS):
            for s in range(SLOTS):
                f.seek(slot_offset(w, s))
                f.write(slot_bytes(w, s, 0))


class Log:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.lock = threading.Lock()
        self.acked = 0

    def line(self, text):
        with self.lock:
            os.write(self.fd, (text + "\n").encode())
            if text.startswith("W "):
                self.acked += 1

    def acked_so_far(self):
        with self.lock:
            return self.acked


def writer(uri, log, mode, w, deadline, stats):
    import nbd
    h = nbd.NBD()
    try:
        h.connect_uri(uri)
    except nbd.Error as e:
        stats[w] = ("connect failed", str(e), 0, 0)
        return
    seq = [0] * SLOTS
    writes = flushes = 0
    i = 0
    try:
        while time.monotonic() < deadline:
            s = (i * 5 + w) % SLOTS
            i += 1
            seq[s] += 1
            q = seq[s]
            log.line("I %d %d %d" % (w, s, q))
            h.pwrite(slot_bytes(w, s, q), slot_offset(w, s))
            log.line("W %d %d %d" % (w, s, q))
            writes += 1
            if mode == "writeback" and writes % FLUSH_EVERY == 0:
                n = log.acked_so_far()
                h.flush()
                log.line("F %d" % n)
                flushes += 1
        stats[w] = ("deadline", "", writes, flushes)
    except nbd.Error as e:
        stats[w] = ("server gone", str(e), writes, flushes)
    try:
        h.shutdown()
    except nbd.Error:
        pass


def write(uri, log_path, mode, seconds):
    log = Log(log_path)
    deadline = time.monotonic() + float(seconds)
    stats = {}
    threads = [threading.Thread(target=writer, args=(uri, log, mode, w, deadline, stats))
               for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writes = sum(v[2] for v in stats.values())
    flushes = sum(v[3] for v in stats.values())
    ends = sorted(set(v[0] for v in stats.values()))
    print("writers: %d writes acknowledged, %d flushes succeeded, ended by: %s"
          % (writes, flushes, ", ".join(ends)))
    if any(v[0] == "connect failed" for v in stats.values()):
        print("a writer could not connect: %s" % [v[1] for v in stats.values()])
        sys.exit(1)


def check(origin, log_path, mode):
    issued = {}
    acked = []
    last_flush_n = 0
    flushes = 0
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if parts[0] == "I":
                w, s, q = map(int, parts[1:])
                issued[(w, s)] = max(issued.get((w, s), 0), q)
            elif parts[0] == "W":
                acked.append(tuple(map(int, parts[1:])))
            elif parts[0] == "F":
                last_flush_n = max(last_flush_n, int(parts[1]))
                flushes += 1
    covered = acked if mode == "writethrough" else acked[:last_flush_n]
    required = {}
    for w, s, q in covered:
        required[(w, s)] = max(required.get((w, s), 0), q)
    bad = []
    newer = 0
    with open(origin, "rb") as f:
        data = f.read()
    if len(data) != SIZE:
        print("origin is %d bytes, want %d" % (len(data), SIZE))
        sys.exit(1)
    for w in range(WRITERS):
        for s in range(SLOTS):
            lo = required.get((w, s), 0)
            hi = issued.get((w, s), 0)
            base = slot_offset(w, s)
            for k in range(SLOT // SECTOR):
                off = base + k * SECTOR
                got = parse_sector(data[off:off + SECTOR])
                if got is None or got[:2] != (w, s) or got[3] != k:
                    bad.append("offset %d (writer %d slot %d sector %d): not a sector of this "
                               "slot (%r)" % (off, w, s, k, got))
                elif not lo <= got[2] <= hi:
                    bad.append("offset %d (writer %d slot %d sector %d): seq %d, want %d..%d"
                               % (off, w, s, k, got[2], lo, hi))
                elif got[2] > lo:
                    newer += 1
            # The gap after each slot is never written: zeros.
            gap = data[base + SLOT: base + STRIDE]
            if gap != bytes(len(gap)):
                bad.append("offset %d: the gap after writer %d slot %d was written" %
                           (base + SLOT, w, s))
    print("check (%s): %d writes acknowledged, %d flushes logged, %d writes required in the "
          "origin, %d sectors newer than required, %d bad sectors"
          % (mode, len(acked), flushes, len(covered), newer, len(bad)))
    for b in bad[:20]:
        print("  " + b)
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "init":
        init(sys.argv[2])
    elif cmd == "write":
        write(*sys.argv[2:6])
    elif cmd == "check":
        check(*sys.argv[2:5])
    else:
        sys.exit("usage: crash_writers.py init|write|check ...")
