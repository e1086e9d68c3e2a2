"""Multi-row INSERT statements: one SQLite step, so one GIL hand-off, per chunk of rows.

``executemany`` steps the statement once per row, and each step releases and re-takes the
GIL. The storage writer thread shares the GIL with the busy event loop, and every re-take
can wait up to the interpreter's switch interval, so a batch of rows written one step at a
time is slowed by the event loop and slows it down in turn. One statement with many
``VALUES`` tuples does the same work in one step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache

ROWS_PER_STATEMENT = 128  # well under SQLite's limit of 32,766 parameters per statement


def insert_rows(
    connection: sqlite3.Connection, head: str, tail: str, rows: Sequence[tuple[object, ...]]
) -> None:
    """Run ``head VALUES (?, ...), (?, ...) ... tail`` for ``rows``, in chunks."""
    if not rows:
        return
    width = len(rows[0])
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        parameters = [value for row in chunk for value in row]
        connection.execute(_statement(head, tail, width, len(chunk)), parameters)


@lru_cache(maxsize=512)
def _statement(head: str, tail: str, width: int, count: int) -> str:
    placeholders = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([placeholders] * count)} {tail}".rstrip()
