"""Where runs and events live: SQLite by default, PostgreSQL by URL (see :func:`open_store`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import Appended, NewRun, RunChanges, SessionTaken, Store, StoreError
from .migrations import LATEST_VERSION, MIGRATIONS
from .postgres import PostgresBackend
from .sql import SqlStore
from .sqlite import SqliteBackend

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Appended",
    "NewRun",
    "RunChanges",
    "SessionTaken",
    "SqlStore",
    "Store",
    "StoreError",
    "make_store",
]


def make_store(url: str) -> SqlStore:
    """A store for ``url``: ``sqlite:///relative.db``, ``sqlite:////abs.db``, ``sqlite:///:memory:``,
    or ``postgresql://user@host/db`` (``postgres://`` too). Raises ValueError for anything else."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return SqlStore(PostgresBackend(url))
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///"):
            raise ValueError(
                f"database URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        path = unquote(url[len("sqlite:///") :])
        if not path:
            raise ValueError(f"database URL {url!r} names no file")
        return SqlStore(SqliteBackend(path if path == ":memory:" else str(Path(path))))
    raise ValueError(
        f"database URL {url!r} is not supported; use sqlite:///path/to/console.db or postgresql://..."
    )
