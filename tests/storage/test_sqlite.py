"""What only the SQLite store does: persist, refuse foreign files, batch fsyncs, survive faults.

Group commit is observed through the ``commits`` and ``appended_entries`` counters. To make
batching deterministic, some tests hold SQLite's write lock from a second connection (as
another process could): the writer then waits in BEGIN while appends queue up behind it.
Faults (a failing COMMIT, a disk that fills mid-insert) are injected by replacing the
module's connection factory with one whose connections fail on cue.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from storage_entries import T0, assert_same, history, session_id

from pymacp.kernel import EntryKind, HistoryEntry
from pymacp.storage import POLICIES, SqliteStore, StorageError, sqlite_statements
from pymacp.storage import sqlite as sqlite_store
from pymacp.storage.codec import to_row
from pymacp.storage.sqlite_schema import SCHEMA_VERSION

SID = session_id(1)


def run(path: Path, scenario: Callable[[SqliteStore], Awaitable[None]], **options: str) -> None:
    async def main() -> None:
        store = SqliteStore(path, **options)
        await store.open()
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Take SQLite's write lock from another connection, as a second process could."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    return raw


def release(raw: sqlite3.Connection) -> None:
    raw.execute("COMMIT")
    raw.close()


# -- files, schema and persistence ---------------------------------------------------------------


def test_histories_documents_and_deletes_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def write(store: SqliteStore) -> None:
        await store.append(SID, history(SID, 9))
        await store.append(session_id(2), history(session_id(2), 3))
        await store.put_document(POLICIES, "p.kept", '{"kept":true}')
        await store.put_document(POLICIES, "p.gone", "{}")
        await store.delete_document(POLICIES, "p.gone")
        await store.delete_session(session_id(2))

    async def check(store: SqliteStore) -> None:
        assert_same(await store.read(SID), history(SID, 9))
        assert await store.read(session_id(2)) == []
        assert await store.documents(POLICIES) == {"p.kept": '{"kept":true}'}
        await store.append(SID, history(SID, 10)[9:])  # the log continues where it stopped
        assert await store.read(SID, 9) == history(SID, 10)[9:]

    run(path, write)
    run(path, check)


def test_the_data_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        assert store.path == path
        await store.append(SID, history(SID, 1))

    run(path, scenario)
    assert path.is_file()


def test_a_data_directory_that_cannot_be_created_is_reported_with_its_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    store = SqliteStore(blocker / "data" / "macp.db")
    with pytest.raises(StorageError, match="cannot use the data directory") as caught:
        asyncio.run(store.open())
    assert str(blocker / "data") in str(caught.value)


def test_the_database_uses_write_ahead_logging_and_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"
    run(path, lambda store: store.append(SID, history(SID, 1)))
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        raw.close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"
    path.write_bytes(b"this is not an SQLite database, just some text that is long enough" * 20)
    with pytest.raises(StorageError, match=r"cannot open .* as a pymacp store") as caught:
        asyncio.run(SqliteStore(path).open())
    assert str(path) in str(caught.value)


def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE accounts (id INTEGER)")
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="not a pymacp store"):
        asyncio.run(SqliteStore(path).open())


def _set_schema_version(path: Path, version: object) -> None:
    run(path, lambda store: store.put_document(POLICIES, "p", "{}"))
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = ?", (version,))
    raw.commit()
    raw.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"
    _set_schema_version(path, SCHEMA_VERSION + 1)
    with pytest.raises(StorageError, match="newer pymacp"):
        asyncio.run(SqliteStore(path).open())


@pytest.mark.parametrize("version", [0, "one"])
def test_an_unknown_schema_is_refused(tmp_path: Path, version: object) -> None:
    path = tmp_path / "macp.db"
    _set_schema_version(path, version)
    with pytest.raises(StorageError, match="unknown store schema version"):
        asyncio.run(SqliteStore(path).open())


# The layouts older pymacp releases wrote, as a user's existing data directory holds them.
_SCHEMA_1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE entries (session_id TEXT NOT NULL, idx INTEGER NOT NULL, ordinal INTEGER NOT NULL, "
    "kind INTEGER NOT NULL, accepted_at INTEGER NOT NULL, envelope BLOB NOT NULL, binding TEXT, "
    "PRIMARY KEY (session_id, idx)) WITHOUT ROWID",
    "CREATE INDEX entries_by_ordinal ON entries (session_id, ordinal) WHERE ordinal > 0",
    "CREATE INDEX entries_sessions ON entries (session_id) WHERE idx = 0",
    "CREATE TABLE documents (registry TEXT NOT NULL, key TEXT NOT NULL, document TEXT NOT NULL, "
    "PRIMARY KEY (registry, key)) WITHOUT ROWID",
)
_SCHEMA_2 = (
    *_SCHEMA_1,
    "CREATE TABLE summaries (session_id TEXT PRIMARY KEY, summary TEXT NOT NULL) WITHOUT ROWID",
)


def _old_store(path: Path, version: int, histories: dict[str, list[HistoryEntry]]) -> None:
    raw = sqlite3.connect(path)
    for statement in _SCHEMA_1 if version == 1 else _SCHEMA_2:
        raw.execute(statement)
    raw.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    for sid, entries in histories.items():
        raw.executemany(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", [(sid, *to_row(e)) for e in entries]
        )
        if version == 2:
            raw.execute("INSERT INTO summaries VALUES (?, ?)", (sid, f"summary of {sid}"))
    raw.execute("INSERT INTO documents VALUES (?, ?, ?)", (POLICIES, "p", "{}"))
    raw.commit()
    raw.close()


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_written_by_an_older_release_is_upgraded_in_place(tmp_path: Path, version: int) -> None:
    path = tmp_path / "macp.db"
    other = session_id(2)
    full, second = history(SID, 23), history(other, 5)
    _old_store(path, version, {SID: full[:20], other: second})

    async def scenario(store: SqliteStore) -> None:
        assert await store.read(SID) == full[:20]
        visible = [e for e in full[:20] if e.streamable]
        assert await store.read_streamable(SID, 4, 100) == visible[4:]
        assert [sid async for sid, _ in store.sessions()] == sorted([SID, other])
        assert dict(await store.documents(POLICIES)) == {"p": "{}"}
        summaries = [item async for item in store.summaries()]
        assert summaries == ([] if version == 1 else sorted((s, f"summary of {s}") for s in (SID, other)))
        with pytest.raises(StorageError, match="already has an entry at index 19"):
            await store.append(SID, full[19:21])
        await store.append(SID, full[20:])
        assert await store.read(SID) == full

    run(path, scenario)
    raw = sqlite3.connect(path)
    try:
        versions = [v for (v,) in raw.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(version, SCHEMA_VERSION + 1))
        indexes = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"entries_by_session", "entries_sessions"} <= indexes
        assert "entries_by_ordinal" not in indexes
        table_sql = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
        assert "WITHOUT ROWID" not in table_sql
    finally:
        raw.close()
    run(path, lambda store: _expect(store.read(SID), full))  # and it opens again as it is


def test_synchronous_must_be_a_sqlite_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "macp.db", synchronous="sometimes")
    path = tmp_path / "normal.db"
    run(path, lambda store: store.append(SID, history(SID, 2)), synchronous="normal")
    run(path, lambda store: _expect(store.read(SID), history(SID, 2)))


async def _expect(awaitable: Awaitable[object], expected: object) -> None:
    assert await awaitable == expected


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("envelope", b"\xff\xff\xff\xff", "Error parsing message"),
        ("envelope", "text, not bytes", "not bytes"),
        ("binding", "{not json", "Expecting property name"),
        ("binding", '{"policy": {}}', "policy_id"),
        ("kind", 9, "not a valid EntryKind"),
        ("accepted_at", "yesterday", "expected an integer"),
    ],
)
def test_a_damaged_row_is_reported_not_skipped(
    tmp_path: Path, column: str, value: object, problem: str
) -> None:
    path = tmp_path / "macp.db"
    run(path, lambda store: store.append(SID, history(SID, 3)))
    raw = sqlite3.connect(path)
    raw.execute(f"UPDATE entries SET {column} = ? WHERE idx = 0", (value,))
    raw.commit()
    raw.close()

    async def scenario(store: SqliteStore) -> None:
        with pytest.raises(StorageError, match=f"entry 0 of session '{SID}' is damaged") as caught:
            await store.read(SID)
        assert problem in str(caught.value)
        assert await store.read(SID, 1) == history(SID, 3)[1:]  # the rest stays readable

    run(path, scenario)


def test_a_failing_read_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        raw = sqlite3.connect(path)
        raw.execute("DROP TABLE documents")
        raw.commit()
        raw.close()
        with pytest.raises(StorageError, match=r"reading .* failed: no such table"):
            await store.documents(POLICIES)

    run(path, scenario)


# -- group commit --------------------------------------------------------------------------------


def test_concurrent_appends_share_transactions(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore) -> None:
        sessions = [session_id(n) for n in range(64)]
        await asyncio.gather(*(store.append(sid, history(sid, 1)) for sid in sessions))
        assert store.appended_entries == 64
        assert store.commits < 16, f"64 concurrent appends took {store.commits} commits"
        for sid in sessions:
            assert await store.read(sid) == history(sid, 1)

    run(tmp_path / "macp.db", scenario)


def test_everything_queued_behind_a_busy_writer_commits_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        raw = hold_write_lock(path)
        tasks = [
            asyncio.create_task(store.append(session_id(n), history(session_id(n), 3))) for n in range(64)
        ]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in tasks)
        release(raw)
        await asyncio.gather(*tasks)
        assert store.commits <= 2  # the first append may have started alone before the others queued
        assert store.appended_entries == 64 * 3

    run(path, scenario)


def test_writes_arriving_while_the_writer_waits_for_a_lock_join_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        raw = hold_write_lock(path)
        first = asyncio.create_task(store.append(session_id(0), history(session_id(0), 3)))
        await asyncio.sleep(0.05)  # the writer has taken the first append and is waiting
        later = [
            asyncio.create_task(store.append(session_id(n), history(session_id(n), 3))) for n in range(1, 9)
        ]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(task.done() for task in later)
        release(raw)
        await asyncio.gather(first, *later)
        assert store.commits == 1  # one transaction, not the first alone and then the rest
        for n in range(9):
            assert await store.read(session_id(n)) == history(session_id(n), 3)

    run(path, scenario)


def test_one_callers_bad_append_does_not_fail_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"
    ok = [session_id(n) for n in range(5)]
    clash = session_id(9)

    async def scenario(store: SqliteStore) -> None:
        raw = hold_write_lock(path)
        tasks = [asyncio.create_task(store.append(sid, history(sid, 4))) for sid in ok[:2]]
        tasks.append(asyncio.create_task(store.append(clash, history(clash, 2))))
        clashing = asyncio.create_task(store.append(clash, history(clash, 3)))  # same indexes, same batch
        tasks += [asyncio.create_task(store.append(sid, history(sid, 4))) for sid in ok[2:]]
        await asyncio.sleep(0.1)
        release(raw)
        await asyncio.gather(*tasks)
        with pytest.raises(StorageError, match="already has an entry at index 0"):
            await clashing
        for sid in ok:
            assert await store.read(sid) == history(sid, 4)
        assert await store.read(clash) == history(clash, 2)
        assert store.appended_entries == 5 * 4 + 2
        assert store.commits <= 2

    run(path, scenario)


def test_an_append_clashing_with_rows_written_behind_the_stores_back_is_refused_alone(
    tmp_path: Path,
) -> None:
    # The store checks appends against its own idea of each log's end; a row written by
    # something else makes the batch's single INSERT fail, and the slow path sorts it out.
    path = tmp_path / "macp.db"
    full, other = history(SID, 5), history(session_id(2), 2)

    async def scenario(store: SqliteStore) -> None:
        await store.append(SID, full[:3])
        raw = sqlite3.connect(path)
        raw.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", (SID, *to_row(full[3])))
        raw.commit()
        raw.close()
        clashing = asyncio.create_task(store.append(SID, full[3:4]))
        fine = asyncio.create_task(store.append(session_id(2), other))
        with pytest.raises(StorageError, match="already has an entry at index 3"):
            await clashing
        await fine
        await store.append(SID, full[4:])  # the store knows the log's real end now
        assert await store.read(SID) == full
        assert await store.read(session_id(2)) == other

    run(path, scenario)


def test_reads_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        full = history(SID, 4)
        await store.append(SID, full[:2])
        raw = hold_write_lock(path)
        pending = asyncio.create_task(store.append(SID, full[2:]))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await store.read(SID) == full[:2]
        assert await store.read_streamable(SID, 0, 10) == full[:2]
        assert time.monotonic() - started < 1.0
        assert not pending.done()
        release(raw)
        await pending
        assert await store.read(SID) == full

    run(path, scenario)


def test_close_drains_appends_already_queued(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"
    sessions = [session_id(n) for n in range(10)]

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        raw = hold_write_lock(path)
        tasks = [asyncio.create_task(store.append(sid, history(sid, 2))) for sid in sessions]
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_later(0.2, release, raw)
        await store.close()
        assert all(task.done() and task.exception() is None for task in tasks)

    asyncio.run(main())
    run(path, lambda store: _expect(store.read(sessions[-1]), history(sessions[-1], 2)))


def test_a_cancelled_append_is_still_written(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        raw = hold_write_lock(path)
        task = asyncio.create_task(store.append(SID, history(SID, 2)))
        await asyncio.sleep(0.05)
        task.cancel()
        release(raw)
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.append(session_id(2), history(session_id(2), 1))  # runs after the cancelled one
        assert await store.read(SID) == history(SID, 2)

    run(path, scenario)


def test_an_append_whose_event_loop_is_gone_is_written_anyway(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"
    store = SqliteStore(path)
    held: list[sqlite3.Connection] = []

    async def abandon() -> None:
        await store.open()
        held.append(hold_write_lock(path))
        asyncio.get_running_loop().create_task(store.append(SID, history(SID, 1)))
        await asyncio.sleep(0.05)  # queued; asyncio.run then cancels the task and closes this loop

    asyncio.run(abandon())
    release(held[0])  # the writer commits and finds nobody to tell

    async def finish() -> None:
        await store.append(session_id(2), history(session_id(2), 1))
        assert await store.read(SID) == history(SID, 1)
        await store.close()

    asyncio.run(finish())


def test_sessions_pages_through_many_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_statements, "SESSION_PAGE", 3)
    expected = {session_id(n): history(session_id(n), 2) for n in range(10)}

    async def scenario(store: SqliteStore) -> None:
        await asyncio.gather(*(store.append(sid, entries) for sid, entries in expected.items()))
        seen = {sid: entries async for sid, entries in store.sessions()}
        assert seen == expected
        assert list(seen) == sorted(expected)

    run(tmp_path / "macp.db", scenario)


# -- injected faults -----------------------------------------------------------------------------


@dataclass
class Faults:
    commit: bool = False
    rollback_to: bool = False
    full_disk_for: str | None = None  # a session whose insert fails after writing its rows
    begin: bool = False  # BEGIN IMMEDIATE fails with an I/O error, not for a lock
    begins: int = 0  # BEGIN IMMEDIATE statements run so far


def _disk_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full (injected)")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    error.sqlite_errorname = "SQLITE_FULL"
    return error


def install_faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    faults = Faults()

    class FaultyConnection(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            # A batch of appends commits as one autocommit INSERT INTO appends; in that
            # statement a failed commit and a full disk both strike before it is done.
            one_statement = sql.startswith("INSERT INTO appends") and not self.in_transaction
            if faults.commit and (sql == "COMMIT" or one_statement):
                raise sqlite3.OperationalError("disk I/O error (injected)")
            if sql == "BEGIN IMMEDIATE":
                faults.begins += 1
                if faults.begin:
                    raise sqlite3.OperationalError("disk I/O error (injected)")
            if faults.rollback_to and sql.startswith("ROLLBACK TO"):
                raise sqlite3.OperationalError("cannot rollback (injected)")
            # A multi-row insert carries each row's session id among its parameters.
            doomed = faults.full_disk_for
            hits = doomed is not None and sql.startswith("INSERT INTO") and doomed in list(parameters)
            if hits and one_statement:
                raise _disk_full()  # SQLite undoes the whole statement: nothing was written
            cursor = super().execute(sql, parameters)
            if hits:
                raise _disk_full()  # inside a transaction: written, to be rolled back by the store
            return cursor

        def executemany(self, sql: str, rows: Iterable[Any], /) -> sqlite3.Cursor:
            rows = list(rows)
            cursor = super().executemany(sql, rows)
            # The doomed session's rows cannot be written, whichever batch they travel in.
            if faults.full_disk_for is not None and any(row[0] == faults.full_disk_for for row in rows):
                raise sqlite3.OperationalError("database or disk is full (injected)")
            return cursor

    def connect(path: Path) -> sqlite3.Connection:
        return sqlite3.connect(
            path,
            timeout=sqlite_store.BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
            factory=FaultyConnection,
        )

    monkeypatch.setattr(sqlite_store, "_connect", connect)
    return faults


def test_a_write_failing_halfway_is_rolled_back_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = install_faults(monkeypatch)
    path = tmp_path / "macp.db"
    doomed = session_id(7)
    faults.full_disk_for = doomed

    async def scenario(store: SqliteStore) -> None:
        raw = hold_write_lock(path)
        first = asyncio.create_task(store.append(SID, history(SID, 3)))
        failing = asyncio.create_task(store.append(doomed, history(doomed, 3)))
        last = asyncio.create_task(store.append(session_id(2), history(session_id(2), 3)))
        await asyncio.sleep(0.1)
        release(raw)
        await asyncio.gather(first, last)
        with pytest.raises(StorageError, match="disk is full") as caught:
            await failing
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert await store.read(doomed) == []  # its rows were written, then rolled back
        assert await store.read(SID) == history(SID, 3)
        assert await store.read(session_id(2)) == history(session_id(2), 3)
        assert store.appended_entries == 6

    run(path, scenario)


def test_a_locked_database_fails_the_batch_but_not_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        raw = hold_write_lock(path)
        with pytest.raises(
            StorageError, match=r"cannot start a write transaction.*locked.*nothing was written"
        ):
            await store.append(SID, history(SID, 2))
        release(raw)
        await store.append(SID, history(SID, 2))
        assert await store.read(SID) == history(SID, 2)
        assert store.commits == 1

    run(path, scenario)


def test_a_transaction_that_fails_to_start_for_no_lock_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = install_faults(monkeypatch)

    async def scenario(store: SqliteStore) -> None:
        begun = faults.begins  # opening the store ran one too
        faults.begin = True
        with pytest.raises(
            StorageError, match=r"cannot start a write transaction.*I/O error.*nothing was written"
        ):
            await store.put_document(POLICIES, "p", "{}")  # not an append: takes BEGIN IMMEDIATE
        assert faults.begins == begun + 1  # only a lock held elsewhere is worth waiting for
        faults.begin = False
        await store.put_document(POLICIES, "p", "{}")  # the store stays usable
        assert await store.documents(POLICIES) == {"p": "{}"}

    run(tmp_path / "macp.db", scenario)


def test_a_failed_commit_stops_all_later_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = install_faults(monkeypatch)

    async def scenario(store: SqliteStore) -> None:
        await store.append(SID, history(SID, 1))
        faults.commit = True
        with pytest.raises(StorageError, match=r"committing to .* failed .*disk I/O error"):
            await store.append(SID, history(SID, 2)[1:])
        faults.commit = False
        with pytest.raises(StorageError, match="refuses further writes"):
            await store.put_document(POLICIES, "p", "{}")
        assert await store.read(SID) == history(SID, 1)  # reads still work
        assert store.commits == 1

    run(tmp_path / "macp.db", scenario)


def test_writes_already_queued_when_the_store_breaks_fail_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = install_faults(monkeypatch)
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        faults.commit = True
        raw = hold_write_lock(path)
        first = asyncio.create_task(store.append(SID, history(SID, 1)))
        await asyncio.sleep(0.05)  # the writer now waits in BEGIN holding only this one
        second = asyncio.create_task(store.append(session_id(2), history(session_id(2), 1)))
        await asyncio.sleep(0.05)
        release(raw)
        for task in (first, second):
            with pytest.raises(StorageError, match="refuses further writes"):
                await task

    run(path, scenario)


def test_a_failed_rollback_breaks_the_store_without_hanging_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = install_faults(monkeypatch)
    faults.full_disk_for = SID
    faults.rollback_to = True

    async def scenario(store: SqliteStore) -> None:
        with pytest.raises(StorageError, match="failed and stopped writing: cannot rollback"):
            await store.append(SID, history(SID, 1))
        with pytest.raises(StorageError, match="stopped writing"):
            await store.append(session_id(2), history(session_id(2), 1))

    run(tmp_path / "macp.db", scenario)


def test_entries_round_trip_every_kind(tmp_path: Path) -> None:
    full = history(SID, 14)
    assert {e.kind for e in full} == set(EntryKind)
    assert full[0].accepted_at_ms == T0

    async def scenario(store: SqliteStore) -> None:
        await store.append(SID, full)

    run(tmp_path / "macp.db", scenario)
    run(tmp_path / "macp.db", lambda store: _expect(store.read(SID), full))


def test_checkpoints_run_in_the_background_not_in_commits(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def scenario(store: SqliteStore) -> None:
        for n in range(200):
            await store.append(session_id(n), history(session_id(n), 2))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a checkpoint that has copied the whole log back
            result = store.checkpointer.last_result
            if result is not None and result[1] > 0 and result[1] == result[2]:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"no complete background checkpoint; last result {store.checkpointer.last_result}")
        assert store.checkpointer.checkpoints >= 1

    run(path, scenario)
    check = sqlite3.connect(path)
    try:
        assert check.execute("SELECT count(*) FROM entries").fetchone() == (400,)
    finally:
        check.close()
