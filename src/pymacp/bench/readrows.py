"""The recovery baseline: read every row of a store's ``entries`` table, and nothing else.

Run as its own process, ``python -m pymacp.bench.readrows PATH``; it opens the SQLite file
read-only with the standard ``sqlite3`` module, fetches every column of every row, and
prints the row count. It imports nothing heavier than ``sqlite3``, so its time from spawn
to exit is the floor for a runtime that must read its whole log back at start-up.
"""

from __future__ import annotations

import sqlite3
import sys
import time

BATCH = 10_000


def read_rows(path: str) -> int:
    """Every column of every row of ``entries``, read-only; returns the row count."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = connection.execute("SELECT * FROM entries")
        rows = 0
        while batch := cursor.fetchmany(BATCH):
            rows += len(batch)
        return rows
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pymacp.bench.readrows PATH", file=sys.stderr)
        return 2
    began = time.monotonic()
    rows = read_rows(argv[0])
    print(f"{rows} rows in {time.monotonic() - began:.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
