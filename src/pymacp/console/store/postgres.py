"""PostgreSQL through psycopg 3, for deployments that already run a database server."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .sql import Connection, Cursor

CONNECT_TIMEOUT_S = 5
# An arbitrary constant: the advisory lock two consoles take before migrating one database.
MIGRATION_LOCK_KEY = 0x6D616370


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.description = f"PostgreSQL database {_without_password(url)}"

    def connect(self) -> Connection:
        import psycopg  # imported here so SQLite-only installs never load it

        conn: Any = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        return conn  # type: ignore[no-any-return]

    def begin(self) -> str:
        return "BEGIN"

    def for_update(self) -> str:
        return " FOR UPDATE"

    def placeholders(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def is_integrity_error(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.IntegrityError)

    def is_connection_error(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)

    def lock_migrations(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
