"""The SQLite store's tables, and how a file written by an older pymacp is brought up to date.

Layout (schema 3)
-----------------
``entries`` holds one row per history entry (see :mod:`.codec` for the columns) in a plain
rowid table, so rows are stored in the order they were appended: a commit adds its rows at
the right edge of one B-tree instead of into the middle of one page per session it touches.
Two indexes find them again:

* ``entries_by_session (session_id, idx)`` — unique; reads a session's log in order and
  refuses an append that does not continue it. Reads by stream ordinal use it too: the entry
  with ordinal ``o`` sits at ``idx >= o - 1`` (ordinals are 1-based and each streamable entry
  takes one index), so a read after ordinal ``n`` starts at ``idx = n`` and steps over only
  the few lifecycle records (ordinal 0) that follow.
* ``entries_sessions (session_id, idx) WHERE idx = 0`` — one row per stored session, for listing.

``summaries`` holds one opaque summary per session, written in the same transaction as the
entries it describes; ``documents`` holds the registries; ``schema_version`` the layout.

Schema 2 kept ``entries`` clustered by ``(session_id, idx)`` (WITHOUT ROWID) with a second
index by ordinal. Every commit then dirtied two or three pages per session it touched, and
each dirty page is written to the WAL at COMMIT; the rowid layout cut the writer's CPU per
commit to about a third. Migrating rewrites the table once, inside the opening transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from .base import StorageError
from .checkpoint import WRITER_AUTOCHECKPOINT_PAGES

log = logging.getLogger("pymacp.storage")

SCHEMA_VERSION = 3

_COLUMN_TYPES = """
    session_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    accepted_at INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    binding TEXT"""
_ENTRY_INDEXES = (
    "CREATE UNIQUE INDEX entries_by_session ON entries (session_id, idx)",
    # Every stored session has an entry 0 (appends must continue the log), so this lists sessions.
    # Queries name it (INDEXED BY): the planner would otherwise scan entries_by_session.
    "CREATE INDEX entries_sessions ON entries (session_id, idx) WHERE idx = 0",
)
_SUMMARIES = ("CREATE TABLE summaries (session_id TEXT PRIMARY KEY, summary TEXT NOT NULL) WITHOUT ROWID",)
_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    f"CREATE TABLE entries ({_COLUMN_TYPES})",
    *_ENTRY_INDEXES,
    """CREATE TABLE documents (
        registry TEXT NOT NULL,
        key TEXT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (registry, key)
    ) WITHOUT ROWID""",
    *_SUMMARIES,
)
ENTRY_COLUMNS = "idx, ordinal, kind, accepted_at, envelope, binding"  # a stored row (.codec.Row)
_COLUMNS = f"session_id, {ENTRY_COLUMNS}"
_TO_ROWID_LAYOUT = (
    f"CREATE TABLE entries_appended ({_COLUMN_TYPES})",
    f"INSERT INTO entries_appended ({_COLUMNS}) SELECT {_COLUMNS} FROM entries ORDER BY session_id, idx",
    "DROP TABLE entries",  # and its indexes
    "ALTER TABLE entries_appended RENAME TO entries",
    *_ENTRY_INDEXES,
)
# The writer's way in, on its own connection only (TEMP: nothing of it is stored in the file).
# One INSERT into ``appends`` writes a batch's entries AND the summaries that go with them
# (a row carries its append's summary on its last entry, or only a summary), so a batch can
# commit as ONE statement in autocommit mode: one call into SQLite, hence one release of
# the GIL, instead of BEGIN, two INSERTs and COMMIT each waiting to take it back from the
# busy event loop.
APPEND_COLUMNS = f"{_COLUMNS}, summary"
_APPEND_VIEW = (
    f"CREATE TEMP VIEW appends AS SELECT {_COLUMNS}, NULL AS summary FROM entries",
    f"""CREATE TEMP TRIGGER appends_insert INSTEAD OF INSERT ON appends BEGIN
        INSERT INTO entries ({_COLUMNS})
            SELECT NEW.session_id, NEW.idx, NEW.ordinal, NEW.kind, NEW.accepted_at, NEW.envelope, NEW.binding
            WHERE NEW.idx IS NOT NULL;
        INSERT INTO summaries (session_id, summary)
            SELECT NEW.session_id, NEW.summary WHERE NEW.summary IS NOT NULL
            ON CONFLICT (session_id) DO UPDATE SET summary = excluded.summary;
    END""",
)
# version -> the statements that take a store from that version to the next one.
_MIGRATIONS = {1: _SUMMARIES, 2: _TO_ROWID_LAYOUT}


def prepare(connection: sqlite3.Connection, synchronous: str, path: Path) -> None:
    """Set up the writer connection; create the tables, or migrate them, in one transaction."""
    (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise StorageError(f"{path} cannot use write-ahead logging (journal mode stays {mode!r})")
    connection.execute(f"PRAGMA synchronous = {synchronous}")  # the caller checked the value
    connection.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")  # see .checkpoint
    connection.execute("BEGIN IMMEDIATE")
    try:
        listing = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {name for (name,) in listing}
        if tables:
            _check_schema(connection, tables, path)
        else:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    for statement in _APPEND_VIEW:
        connection.execute(statement)


def _check_schema(connection: sqlite3.Connection, tables: set[str], path: Path) -> None:
    if "schema_version" not in tables:
        raise StorageError(
            f"{path} is an SQLite database but not a pymacp store (it has no schema_version table); "
            "point the runtime at a new file or an existing pymacp store"
        )
    (version,) = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    while isinstance(version, int) and version in _MIGRATIONS:
        log.info("upgrading the store %s from schema %d to %d", path, version, version + 1)
        for statement in _MIGRATIONS[version]:
            connection.execute(statement)
        version += 1
        connection.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    if version == SCHEMA_VERSION:
        return
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} uses store schema {version}, written by a newer pymacp; this one reads schema "
            f"{SCHEMA_VERSION}, so upgrade pymacp to open it"
        )
    raise StorageError(
        f"{path} has an unknown store schema version {version!r}; this pymacp reads schema {SCHEMA_VERSION}"
    )
