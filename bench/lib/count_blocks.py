#!/usr/bin/python3
"""Counts the distinct blocks that the writes of a fio I/O log (write_iolog,
version 2 or 3) touched.

usage: count_blocks.py IOLOG BLOCK_SIZE
"""
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: count_blocks.py IOLOG BLOCK_SIZE")
    block = int(sys.argv[2])
    blocks = set()
    with open(sys.argv[1]) as f:
        for line in f:
            fields = line.split()
            # v2: "file action offset length"; v3: "time file action offset length"
            if "write" not in fields:
                continue
            i = fields.index("write")
            offset, length = int(fields[i + 1]), int(fields[i + 2])
            blocks.update(range(offset // block, (offset + length - 1) // block + 1))
    print(len(blocks))


if __name__ == "__main__":
    main()
