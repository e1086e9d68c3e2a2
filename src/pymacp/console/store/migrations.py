"""The console's schema, as one ordered list of migrations shared by SQLite and PostgreSQL.

Each migration has a version, a one-line description and its statements; where the two
dialects differ (auto-numbered keys) a statement is a ``{dialect: sql}`` mapping. Applied
versions are recorded in ``schema_version``, so opening a database applies exactly the
missing ones, in order, each in its own transaction. A database whose version is newer than
this code knows is refused rather than guessed at.

Never edit a released migration; append a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Statement = str | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[Statement, ...]

    def sql(self, dialect: str) -> list[str]:
        return [s if isinstance(s, str) else s[dialect] for s in self.statements]


SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_at_ms BIGINT NOT NULL)"
)

_RUN_COLUMNS = (
    "run_id TEXT NOT NULL UNIQUE,"
    " session_id TEXT NOT NULL UNIQUE,"
    " status TEXT NOT NULL,"
    " source TEXT NOT NULL,"
    " mode_name TEXT,"
    " participants TEXT NOT NULL,"
    " session_state TEXT,"
    " descriptor TEXT,"
    " cancel_bearer TEXT,"
    " idempotency_key TEXT UNIQUE,"
    " tags TEXT NOT NULL,"
    " created_at_ms BIGINT NOT NULL,"
    " updated_at_ms BIGINT NOT NULL,"
    " ended_at_ms BIGINT,"
    " last_seq BIGINT NOT NULL DEFAULT 0,"
    " last_ordinal BIGINT NOT NULL DEFAULT 0,"
    " error TEXT"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs and their events",
        (
            # ``position`` orders runs newest-first for cursor pagination; it is never shown.
            {
                "sqlite": f"CREATE TABLE runs (position INTEGER PRIMARY KEY AUTOINCREMENT, {_RUN_COLUMNS})",
                "postgresql": (
                    "CREATE TABLE runs (position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                    f"{_RUN_COLUMNS})"
                ),
            },
            "CREATE INDEX runs_by_status ON runs (status, position)",
            "CREATE INDEX runs_by_mode ON runs (mode_name, position)",
            # Envelope events are unique per message id, so a resume that starts too low is
            # harmless; console events have no message id (NULLs never collide).
            "CREATE TABLE run_events ("
            " run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,"
            " seq BIGINT NOT NULL,"
            " type TEXT NOT NULL,"
            " ordinal BIGINT,"
            " message_id TEXT,"
            " message_type TEXT,"
            " sender TEXT,"
            " timestamp_ms BIGINT NOT NULL,"
            " data TEXT NOT NULL,"
            " PRIMARY KEY (run_id, seq),"
            " UNIQUE (run_id, message_id))",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version
