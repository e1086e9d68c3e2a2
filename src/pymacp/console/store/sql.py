"""The store, written once for SQLite and PostgreSQL.

Both drivers are synchronous DB-API connections (sqlite3, psycopg 3) driven from one
dedicated worker thread, so every statement of the console runs in order on one connection
and the event loop never blocks on the database. Writes are explicit transactions; in
PostgreSQL the run row is locked (``FOR UPDATE``) while its next seq numbers are allocated,
so even two console processes on one database could not number events twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol, TypeVar, cast

from ..events import NewEvent
from ..models import TERMINAL_STATUSES, Run, RunEvent, RunStatus
from .base import Appended, NewRun, RunChanges, SessionTaken, StoreError
from .migrations import LATEST_VERSION, MIGRATIONS, SCHEMA_VERSION_TABLE

log = logging.getLogger("pymacp.console.store")
T = TypeVar("T")

RUN_COLUMNS = (
    "position, run_id, session_id, status, source, mode_name, participants, session_state, descriptor,"
    " idempotency_key, tags, created_at_ms, updated_at_ms, ended_at_ms, last_seq, last_ordinal, error"
)
EVENT_COLUMNS = "run_id, seq, type, ordinal, message_id, message_type, sender, timestamp_ms, data"


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def cursor(self) -> Any: ...
    def close(self) -> None: ...


class Backend(Protocol):
    """What differs between the two databases."""

    dialect: str
    description: str  # for messages: the database, without credentials

    def connect(self) -> Connection: ...  # in autocommit mode; transactions are explicit
    def begin(self) -> str: ...
    def for_update(self) -> str: ...
    def placeholders(self, sql: str) -> str: ...
    def is_integrity_error(self, exc: BaseException) -> bool: ...
    def is_connection_error(self, exc: BaseException) -> bool: ...
    def lock_migrations(self, cur: Cursor) -> None: ...


class SqlStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-db")
        self._conn: Connection | None = None
        self._ready = False
        self._closed = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def dialect(self) -> str:
        return self._backend.dialect

    # ------------------------------------------------------------------ plumbing
    async def _call(self, work: Callable[[Cursor], T], *, transaction: bool) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, work, transaction)

    def _run(self, work: Callable[[Cursor], T], transaction: bool) -> T:
        try:
            if self._conn is None:
                self._conn = self._backend.connect()
            cur = _Translating(self._conn.cursor(), self._backend)
            if not transaction:
                result = work(cur)
                self._ready = True
                return result
            cur.execute(self._backend.begin())
            try:
                result = work(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            self._ready = True
            return result
        except (SessionTaken, KeyError):
            raise
        except Exception as exc:
            if self._backend.is_integrity_error(exc):
                raise
            if self._backend.is_connection_error(exc) or self._conn is None:
                self._ready = False
                self._drop_connection()
            raise StoreError(f"{self._backend.description}: {exc}") from exc

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken; a new connection is made on the next call
                log.debug("closing a broken connection failed", exc_info=True)
            self._conn = None

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        await self._call(self._migrate, transaction=False)

    def _migrate(self, cur: Cursor) -> None:
        cur.execute(SCHEMA_VERSION_TABLE)
        cur.execute(self._backend.begin())
        try:
            self._backend.lock_migrations(cur)
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            current = int(cur.fetchone()[0])
            if current > LATEST_VERSION:
                raise StoreError(
                    f"{self._backend.description} has console schema version {current}, newer than this "
                    f"pymacp knows ({LATEST_VERSION}); upgrade pymacp or use another database"
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for sql in migration.sql(self._backend.dialect):
                    cur.execute(sql)
                cur.execute(
                    "INSERT INTO schema_version (version, description, applied_at_ms) VALUES (?, ?, ?)",
                    (migration.version, migration.description, _now_ms()),
                )
                log.info(
                    "console schema migrated to version %d: %s", migration.version, migration.description
                )
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    async def close(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._drop_connection)
        self._closed = True
        self._ready = False
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ writes
    async def create_run(self, new: NewRun, now_ms: int) -> tuple[Run, bool]:
        for attempt in (1, 2):
            try:
                return await self._call(lambda cur: self._create(cur, new, now_ms), transaction=True)
            except Exception as exc:
                # Another writer inserted the same key between our check and our insert; the
                # second attempt sees its row.
                if not self._backend.is_integrity_error(exc):
                    raise
                if attempt == 2:
                    raise StoreError(f"{self._backend.description}: {exc}") from exc
        raise AssertionError("unreachable")

    def _create(self, cur: Cursor, new: NewRun, now_ms: int) -> tuple[Run, bool]:
        if new.idempotency_key is not None:
            existing = self._select_run(cur, "idempotency_key = ?", new.idempotency_key)
            if existing is not None:
                return existing, False
        taken = self._select_run(cur, "session_id = ?", new.session_id)
        if taken is not None:
            if taken.source != "discovered" or taken.descriptor is not None or new.source != "api":
                raise SessionTaken(taken)
            cur.execute(
                "UPDATE runs SET source = ?, descriptor = ?, cancel_bearer = ?, idempotency_key = ?,"
                " tags = ?, updated_at_ms = ? WHERE run_id = ?",
                (
                    new.source,
                    _dump_optional(new.descriptor),
                    new.cancel_bearer,
                    new.idempotency_key,
                    _dump(list(new.tags)),
                    now_ms,
                    taken.run_id,
                ),
            )
            adopted = self._select_run(cur, "run_id = ?", taken.run_id)
            assert adopted is not None
            return adopted, True
        cur.execute(
            "INSERT INTO runs (run_id, session_id, status, source, mode_name, participants, session_state,"
            " descriptor, cancel_bearer, idempotency_key, tags, created_at_ms, updated_at_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.run_id,
                new.session_id,
                new.status,
                new.source,
                new.mode_name,
                _dump(list(new.participants)),
                new.session_state,
                _dump_optional(new.descriptor),
                new.cancel_bearer,
                new.idempotency_key,
                _dump(list(new.tags)),
                new.created_at_ms,
                new.created_at_ms,
            ),
        )
        created = NewEvent(
            type="run.created",
            timestamp_ms=new.created_at_ms,
            data={
                "source": new.source,
                "sessionId": new.session_id,
                "status": new.status,
                "modeName": new.mode_name,
                "participants": list(new.participants),
                "tags": list(new.tags),
            },
        )
        self._append(cur, new.run_id, [created], None, new.created_at_ms)
        run = self._select_run(cur, "run_id = ?", new.run_id)
        assert run is not None
        return run, True

    async def append(
        self, run_id: str, events: Sequence[NewEvent], changes: RunChanges | None, now_ms: int
    ) -> Appended:
        return await self._call(
            lambda cur: self._append(cur, run_id, events, changes, now_ms), transaction=True
        )

    def _append(
        self, cur: Cursor, run_id: str, events: Sequence[NewEvent], changes: RunChanges | None, now_ms: int
    ) -> Appended:
        cur.execute(
            "SELECT last_seq, last_ordinal, status, session_state, mode_name, participants, error"
            f" FROM runs WHERE run_id = ?"
            f"{self._backend.for_update()}",
            (run_id,),
        )
        row = cur.fetchone()
        if row is None:
            raise KeyError(run_id)
        seq, ordinal, status = int(row[0]), int(row[1]), cast(RunStatus, row[2])
        stored: list[RunEvent] = []
        for event in events:
            if event.message_id is not None:
                cur.execute(
                    "SELECT 1 FROM run_events WHERE run_id = ? AND message_id = ?", (run_id, event.message_id)
                )
                if cur.fetchone() is not None:
                    continue
            seq += 1
            if event.takes_ordinal:
                ordinal += 1
            numbered = replace(event, ordinal=ordinal) if event.takes_ordinal else event
            stored.append(self._insert_event(cur, run_id, seq, numbered))
        sets: dict[str, Any] = {}
        if changes is not None:
            sets = _run_sets(
                changes,
                {"session_state": row[3], "mode_name": row[4], "participants": row[5], "error": row[6]},
            )
            if changes.skip_to_ordinal is not None and changes.skip_to_ordinal > ordinal:
                ordinal = changes.skip_to_ordinal
                sets["last_ordinal"] = ordinal
            if changes.status is not None and changes.status != status and status not in TERMINAL_STATUSES:
                sets["status"] = changes.status
                if changes.status in TERMINAL_STATUSES:
                    sets["ended_at_ms"] = now_ms
                seq += 1
                moved = NewEvent(
                    type="run.status.changed",
                    timestamp_ms=now_ms,
                    data=_drop_none(
                        {
                            "from": status,
                            "to": changes.status,
                            "sessionState": changes.session_state or row[3],
                            "reason": changes.reason,
                            "error": changes.error,
                        }
                    ),
                )
                stored.append(self._insert_event(cur, run_id, seq, moved))
        changed = bool(stored or sets)
        if changed:
            sets.update(last_seq=seq, last_ordinal=ordinal, updated_at_ms=now_ms)
            columns = ", ".join(f"{name} = ?" for name in sets)
            cur.execute(f"UPDATE runs SET {columns} WHERE run_id = ?", (*sets.values(), run_id))
        run = self._select_run(cur, "run_id = ?", run_id)
        assert run is not None
        return Appended(run, tuple(stored), changed)

    @staticmethod
    def _insert_event(cur: Cursor, run_id: str, seq: int, event: NewEvent) -> RunEvent:
        cur.execute(
            f"INSERT INTO run_events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                seq,
                event.type,
                event.ordinal,
                event.message_id,
                event.message_type,
                event.sender,
                event.timestamp_ms,
                _dump(event.data),
            ),
        )
        return RunEvent(
            run_id=run_id,
            seq=seq,
            type=event.type,
            ordinal=event.ordinal,
            message_id=event.message_id,
            message_type=event.message_type,
            sender=event.sender,
            timestamp_ms=event.timestamp_ms,
            data=json.loads(_dump(event.data)),
        )

    # ------------------------------------------------------------------ reads
    async def get_run(self, run_id: str) -> Run | None:
        return await self._call(lambda cur: self._select_run(cur, "run_id = ?", run_id), transaction=False)

    async def run_for_session(self, session_id: str) -> Run | None:
        return await self._call(
            lambda cur: self._select_run(cur, "session_id = ?", session_id), transaction=False
        )

    async def cancel_bearer(self, run_id: str) -> str | None:
        def read(cur: Cursor) -> str | None:
            cur.execute("SELECT cancel_bearer FROM runs WHERE run_id = ?", (run_id,))
            row = cur.fetchone()
            return None if row is None or row[0] is None else str(row[0])

        return await self._call(read, transaction=False)

    async def list_runs(
        self,
        *,
        status: str | None,
        mode: str | None,
        source: str | None,
        session_id: str | None,
        before_position: int | None,
        limit: int,
    ) -> list[tuple[int, Run]]:
        filters = {"status": status, "mode_name": mode, "source": source, "session_id": session_id}
        where = [f"{column} = ?" for column, value in filters.items() if value is not None]
        params: list[Any] = [value for value in filters.values() if value is not None]
        if before_position is not None:
            where.append("position < ?")
            params.append(before_position)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        def read(cur: Cursor) -> list[tuple[int, Run]]:
            cur.execute(
                f"SELECT {RUN_COLUMNS} FROM runs{clause} ORDER BY position DESC LIMIT ?", (*params, limit)
            )
            return [(int(row[0]), _run(row)) for row in cur.fetchall()]

        return await self._call(read, transaction=False)

    async def events(self, run_id: str, after_seq: int, limit: int) -> list[RunEvent]:
        def read(cur: Cursor) -> list[RunEvent]:
            cur.execute(
                f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (run_id, after_seq, limit),
            )
            return [_event(row) for row in cur.fetchall()]

        return await self._call(read, transaction=False)

    async def unfinished_runs(self) -> list[Run]:
        terminal = sorted(TERMINAL_STATUSES)

        def read(cur: Cursor) -> list[Run]:
            marks = ", ".join("?" for _ in terminal)
            cur.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status NOT IN ({marks}) ORDER BY position", terminal
            )
            return [_run(row) for row in cur.fetchall()]

        return await self._call(read, transaction=False)

    @staticmethod
    def _select_run(cur: Cursor, where: str, value: Any) -> Run | None:
        cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE {where}", (value,))
        row = cur.fetchone()
        return None if row is None else _run(row)


class _Translating:
    """A cursor that rewrites ``?`` placeholders for drivers that use ``%s``."""

    def __init__(self, cursor: Any, backend: Backend) -> None:
        self._cursor = cursor
        self._backend = backend

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(self._backend.placeholders(sql), tuple(params))

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


def _run_sets(changes: RunChanges, current: Mapping[str, Any]) -> dict[str, Any]:
    """The columns ``changes`` would really change (so an idle reconcile writes nothing)."""
    wanted = {
        "session_state": changes.session_state,
        "mode_name": changes.mode_name,
        "participants": None if changes.participants is None else _dump(list(changes.participants)),
        "error": changes.error,
    }
    return {name: value for name, value in wanted.items() if value is not None and value != current[name]}


def _run(row: Sequence[Any]) -> Run:
    return Run(
        run_id=row[1],
        session_id=row[2],
        status=row[3],
        source=row[4],
        mode_name=row[5],
        participants=tuple(json.loads(row[6])),
        session_state=row[7],
        descriptor=None if row[8] is None else json.loads(row[8]),
        idempotency_key=row[9],
        tags=tuple(json.loads(row[10])),
        created_at_ms=int(row[11]),
        updated_at_ms=int(row[12]),
        ended_at_ms=None if row[13] is None else int(row[13]),
        last_seq=int(row[14]),
        last_ordinal=int(row[15]),
        error=row[16],
    )


def _event(row: Sequence[Any]) -> RunEvent:
    return RunEvent(
        run_id=row[0],
        seq=int(row[1]),
        type=row[2],
        ordinal=None if row[3] is None else int(row[3]),
        message_id=row[4],
        message_type=row[5],
        sender=row[6],
        timestamp_ms=int(row[7]),
        data=json.loads(row[8]),
    )


def _dump(value: Mapping[str, Any] | list[Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _dump_optional(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else _dump(value)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _now_ms() -> int:
    return int(time.time() * 1000)
