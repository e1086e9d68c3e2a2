"""The SQL the SQLite store runs: one function per statement, each given its connection.

Writes run on the write connection (the writer thread, or the event loop for an inline
commit, see :mod:`.handoff`); reads on a reader thread's read-only connection. Nothing here
opens connections, holds state or knows about threads.
"""

from __future__ import annotations

import sqlite3

from ..kernel import HistoryEntry
from .codec import Row, continuation_error, from_row
from .sqlite_schema import ENTRY_COLUMNS

SESSION_PAGE = 256  # session ids fetched per query while iterating sessions()
SUMMARY_PAGE = 4096  # summaries fetched per query while iterating summaries()


def insert(session_id: str, rows: list[Row], summary: str | None, connection: sqlite3.Connection) -> None:
    if summary is not None:
        connection.execute(
            "INSERT INTO summaries (session_id, summary) VALUES (?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET summary = excluded.summary",
            (session_id, summary),
        )
    if not rows:
        return
    stored = next_index(session_id, connection)
    if rows[0].idx != stored:
        raise continuation_error(session_id, stored, rows[0].idx)
    connection.executemany(
        f"INSERT INTO entries (session_id, {ENTRY_COLUMNS}) VALUES (?{', ?' * len(Row._fields)})",
        [(session_id, *row) for row in rows],
    )


def next_index(session_id: str, connection: sqlite3.Connection) -> int:
    """The index the next entry of ``session_id`` must have: its stored length."""
    last = connection.execute(
        "SELECT idx FROM entries WHERE session_id = ? ORDER BY idx DESC LIMIT 1", (session_id,)
    ).fetchone()
    return 0 if last is None else int(last[0]) + 1


def execute(sql: str, params: tuple[str, ...], connection: sqlite3.Connection) -> None:
    connection.execute(sql, params)


def delete_session(session_id: str, connection: sqlite3.Connection) -> None:
    connection.execute("DELETE FROM entries WHERE session_id = ?", (session_id,))
    connection.execute("DELETE FROM summaries WHERE session_id = ?", (session_id,))


def summary_page(after: str, connection: sqlite3.Connection) -> list[tuple[str, str]]:
    sql = "SELECT session_id, summary FROM summaries WHERE session_id > ? ORDER BY session_id LIMIT ?"
    return [(sid, text) for sid, text in connection.execute(sql, (after, SUMMARY_PAGE))]


def unsummarized(connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT session_id FROM entries INDEXED BY entries_sessions WHERE idx = 0 "
        "AND session_id NOT IN (SELECT session_id FROM summaries) ORDER BY session_id"
    )
    return [sid for (sid,) in connection.execute(sql)]


def select_entries(
    sql: str, session_id: str, params: tuple[object, ...], connection: sqlite3.Connection
) -> list[HistoryEntry]:
    return [from_row(session_id, row) for row in connection.execute(sql, params)]


def select_frames(
    sql: str, params: tuple[object, ...], connection: sqlite3.Connection
) -> list[tuple[int, bytes]]:
    return connection.execute(sql, params).fetchall()


def session_ids(after: str, connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT session_id FROM entries INDEXED BY entries_sessions "
        "WHERE idx = 0 AND session_id > ? ORDER BY session_id LIMIT ?"
    )
    return [session_id for (session_id,) in connection.execute(sql, (after, SESSION_PAGE))]


def select_documents(registry: str, connection: sqlite3.Connection) -> dict[str, str]:
    sql = "SELECT key, document FROM documents WHERE registry = ? ORDER BY key"
    return dict(connection.execute(sql, (registry,)))
