"""SQLite: the default store, a single file (WAL mode) next to the runtime's data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .sql import Connection, Cursor

BUSY_TIMEOUT_MS = 5000


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"SQLite database {path}"

    def connect(self) -> Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; the store issues BEGIN/COMMIT itself.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable at each WAL checkpoint; safe with WAL
        return conn

    def begin(self) -> str:
        return "BEGIN IMMEDIATE"  # take the write lock up front: no upgrade deadlocks

    def for_update(self) -> str:
        return ""  # BEGIN IMMEDIATE already serializes writers

    def placeholders(self, sql: str) -> str:
        return sql

    def is_integrity_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError)

    def lock_migrations(self, cur: Cursor) -> None:
        return None  # BEGIN IMMEDIATE holds the database's write lock
