"""The default store: one embedded SQLite file in WAL mode, with group commit.

Theory of operation
-------------------
One writer thread owns the only write connection. :meth:`SqliteStore.append` (and every
other write) puts a request on a queue and awaits a future. The writer takes everything
that is queued, writes it all in ONE transaction (one WAL fsync for the whole batch under
``synchronous=FULL``), then resolves every caller's future on its event loop. While one
batch is being synced the next one queues up, so the number of fsyncs per second stays
flat as load grows instead of the latency. This is the fix for the reference runtime's
one-lock-across-fsync design. The one exception: a lone write on an otherwise idle event
loop, with the writer idle too, is committed on the loop's own thread, which saves two
thread wake-ups (:mod:`.handoff`); a lock keeps the connection to one thread at a time.

A batch of appends (the hot path) is checked against an in-memory index of each
session's next log position and committed as a single INSERT in autocommit mode, which
writes entries and summaries together (:mod:`.sqlite_schema`): one call into SQLite per
batch, so the writer gives up and re-takes the GIL once instead of once per statement.
Every other batch runs ``BEGIN IMMEDIATE`` ... ``COMMIT`` with each request in its own
SAVEPOINT, so a request that fails (an index that does not continue its session's log, a
constraint) is rolled back alone and the rest of the batch still commits. If the
transaction cannot start, nothing was written and every request of the batch fails; the
store stays usable. If the commit itself fails, the outcome on disk is unknown, so the
store refuses every later write (the log on disk stays the truth; restart to recover).

The write connection never waits inside SQLite for a lock another process holds (its busy
timeout is zero), so a commit on the event loop can never stall it. The writer thread does
the waiting instead: a batch that could not start is retried after a short sleep, together
with whatever has queued up meanwhile, for up to ``BUSY_TIMEOUT_S``; then it fails with
nothing written. (Switching the timeout around each inline commit instead added about 40%
to its CPU time, since SQLite compiles a PRAGMA afresh each time it runs.)

Reads run on a small pool of read-only connections on their own threads. WAL lets them
read the last committed state while the writer is busy, so a read never waits for an
fsync, and never blocks the event loop.

Cancelling an ``append`` does not withdraw it: once queued it is written, like a request
already sent over the network. The runtime therefore never cancels appends.

The tables, and how older files are migrated: :mod:`.sqlite_schema`.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from ..kernel import HistoryEntry
from . import files
from . import sqlite_statements as statements
from .base import StorageError
from .checkpoint import Checkpointer
from .codec import Row, check_append, check_limit, continuation_error, to_row
from .handoff import INLINE_COMMIT_LIMIT_S, CommitPace, copy_error, loop_is_idle, own_copy, resolve, settle
from .sqlbatch import ROWS_PER_STATEMENT, insert_rows
from .sqlite_schema import APPEND_COLUMNS, ENTRY_COLUMNS, prepare

SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
BUSY_TIMEOUT_S = 5.0  # how long a statement waits for a lock another process holds
READERS = 4  # read connections, each used by one thread at a time

_NO_ENTRY = (None,) * len(Row._fields)  # the entry columns of an append that only updates a summary
# Streamable entries after an ordinal, in log order (ordinals grow with idx). The entry with
# ordinal n + 1 has idx >= n, so the scan starts there on entries_by_session (.sqlite_schema).
_AFTER_ORDINAL = "session_id = ? AND idx >= ? AND ordinal > ?"
_INSERT_APPENDS = f"INSERT INTO appends ({APPEND_COLUMNS})"
_FIRST_RETRY_S = 0.001  # a batch refused for a lock is retried after this, then ever less often
_LAST_RETRY_S = 0.05

T = TypeVar("T")


def _connect(path: Path) -> sqlite3.Connection:
    """One connection in autocommit mode: every transaction in this module is explicit."""
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)


@dataclass(slots=True)
class _Append:
    session_id: str
    rows: list[Row]
    summary: str | None


@dataclass(slots=True)
class _Write:
    apply: Callable[[sqlite3.Connection], None]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    entries: int  # history entries this write appends, for the counter
    append: _Append | None = None  # set for appends, which take the batched fast path


@dataclass(slots=True)
class _Plan:
    """A batch of appends checked against the log: each caller's outcome, and what to insert."""

    outcomes: list[StorageError | None]
    rows: list[tuple[object, ...]]  # (session_id, *entry columns, summary), as ``appends`` takes them
    next_index: dict[str, int]  # each session's next log index once the batch is in


class SqliteStore:
    def __init__(
        self, path: Path, *, synchronous: str = "FULL", inline_commit_limit_s: float = INLINE_COMMIT_LIMIT_S
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        self._path = Path(path)
        self._synchronous = synchronous.upper()
        self._open_lock = asyncio.Lock()
        self._lock = threading.Lock()  # makes "check closed, then enqueue" atomic against close()
        self._queue: queue.SimpleQueue[list[_Write] | None] = queue.SimpleQueue()
        # Writes submitted during one event-loop iteration reach the writer together, so
        # requests that arrive together share a transaction instead of racing it one by one.
        self._handover: list[_Write] = []
        self._opened = False
        self._closed = False
        self._broken: StorageError | None = None
        self._writer: sqlite3.Connection | None = None
        self._writer_thread: threading.Thread | None = None
        self._connection_lock = threading.Lock()  # the write connection, one thread at a time
        self._queued = 0  # write groups handed to the writer thread and not yet settled
        self._pace = CommitPace(inline_commit_limit_s)
        self._inline_commits = 0
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._reader_pool: ThreadPoolExecutor | None = None
        self.checkpointer = Checkpointer(self._path)
        self._commits = 0
        self._appended_entries = 0
        self._next_index: dict[str, int] = {}  # writer thread only: each session's next log index

    @property
    def path(self) -> Path:
        return self._path

    @property
    def commits(self) -> int:
        """Write transactions committed so far (one fsync each under synchronous=FULL)."""
        return self._commits

    @property
    def inline_commits(self) -> int:
        """Of :attr:`commits`, those made on the event loop's thread (see :mod:`.handoff`)."""
        return self._inline_commits

    @property
    def appended_entries(self) -> int:
        """History entries durably appended so far."""
        return self._appended_entries

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._open_lock:
            if self._closed:
                raise StorageError(f"the store at {self._path} is closed and cannot be reopened")
            if self._opened:
                return
            writer, readers = await asyncio.to_thread(self._open_files)
            self._writer = writer
            for reader in readers:
                self._readers.put(reader)
            self._reader_pool = ThreadPoolExecutor(len(readers), thread_name_prefix="pymacp-sqlite-read")
            self._writer_thread = threading.Thread(
                target=self._write_loop, args=(writer,), name="pymacp-sqlite-write", daemon=True
            )
            self._writer_thread.start()
            self.checkpointer.start()
            self._opened = True

    async def close(self) -> None:
        async with self._open_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                if not self._opened:
                    return
                self._hand_over_locked()
                self._queue.put(None)  # after every write already queued: those are drained first
            await asyncio.to_thread(self._shut_down)

    def _shut_down(self) -> None:
        assert self._writer_thread is not None and self._reader_pool is not None and self._writer is not None
        self._writer_thread.join()
        self.checkpointer.stop()
        self._reader_pool.shutdown(wait=True)
        with self._connection_lock:  # an inline commit of another loop may still be running
            self._writer.close()
        while not self._readers.empty():
            self._readers.get().close()

    def _open_files(self) -> tuple[sqlite3.Connection, list[sqlite3.Connection]]:
        directory = self._path.parent
        connections: list[sqlite3.Connection] = []
        try:
            changed = files.make_directories(directory)
            if not self._path.exists():
                changed.append(directory)
            if not files.has_pages(self._path):  # create the tables before laying out the log
                first = _connect(self._path)
                try:
                    prepare(first, self._synchronous, self._path)
                finally:
                    first.close()
            # Before any connection has the log open; a log laid out is a new entry in directory.
            if files.preallocate_log(self._path) and directory not in changed:
                changed.append(directory)
            writer = _connect(self._path)
            connections.append(writer)
            prepare(writer, self._synchronous, self._path)
            writer.execute("PRAGMA busy_timeout = 0")  # the writer thread waits instead (above)
            for _ in range(READERS):
                reader = _connect(self._path)
                connections.append(reader)
                reader.execute("PRAGMA query_only = ON")
            for changed_directory in changed:  # make the new directory entries themselves durable
                files.sync_directory(changed_directory)
        except BaseException as exc:
            for connection in connections:
                connection.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot open {self._path} as a pymacp store: {exc}") from exc
            if isinstance(exc, OSError):
                raise StorageError(f"cannot use the data directory {directory}: {exc}") from exc
            raise
        return writer, connections[1:]

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the store at {self._path} is closed")
        if not self._opened:
            raise StorageError(f"the store at {self._path} is not open; call open() first")

    # -- writes ----------------------------------------------------------------------------

    async def append(
        self, session_id: str, entries: Sequence[HistoryEntry], summary: str | None = None
    ) -> None:
        if not entries and summary is None:
            self._check_open()
            return
        if entries:
            check_append(session_id, entries)
        rows = [to_row(entry) for entry in entries]
        await self._submit(
            partial(statements.insert, session_id, rows, summary),
            len(rows),
            _Append(session_id, rows, summary),
        )

    async def delete_session(self, session_id: str) -> None:
        await self._submit(partial(statements.delete_session, session_id))

    async def put_document(self, registry: str, key: str, document: str) -> None:
        sql = (
            "INSERT INTO documents (registry, key, document) VALUES (?, ?, ?) "
            "ON CONFLICT (registry, key) DO UPDATE SET document = excluded.document"
        )
        await self._submit(partial(statements.execute, sql, (registry, key, document)))

    async def delete_document(self, registry: str, key: str) -> None:
        sql = "DELETE FROM documents WHERE registry = ? AND key = ?"
        await self._submit(partial(statements.execute, sql, (registry, key)))

    async def _submit(
        self, apply: Callable[[sqlite3.Connection], None], entries: int = 0, append: _Append | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._check_open()
            if self._broken is not None:
                raise copy_error(self._broken)
            if not self._handover:
                loop.call_soon(self._hand_over)
            self._handover.append(_Write(apply, loop, future, entries, append))
        await future

    def _hand_over(self) -> None:
        """At the end of the loop iteration that submitted writes: commit inline or queue them."""
        with self._lock:
            writes = self._handover
            inline = (
                len(writes) == 1
                and self._queued == 0
                and self._pace.quick
                and loop_is_idle(writes[0].loop)
                and self._connection_lock.acquire(blocking=False)
            )
            if not inline:
                self._hand_over_locked()
                return
            self._handover = []
        (write,) = writes
        outcome = self._commit_inline(write)
        if isinstance(outcome, _NotStarted):  # another process holds the lock: the writer waits for it
            with self._lock:
                if not self._closed:
                    self._handover.append(write)
                    self._hand_over_locked()
                    return
        resolve([(write.future, own_copy(outcome))])

    def _commit_inline(self, write: _Write) -> StorageError | None:
        """Commit one write on the event loop's thread; the caller holds the connection lock."""
        connection = self._writer
        assert connection is not None
        committed = self._commits
        try:
            (outcome,) = self._timed_commit(connection, [write])
        finally:
            self._inline_commits += self._commits - committed
            self._connection_lock.release()
        return outcome

    def _hand_over_locked(self) -> None:
        if self._handover:
            self._queue.put(self._handover)
            self._queued += 1
            self._handover = []

    def _write_loop(self, connection: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            groups, stopping = self._take([self._queue.get()])
            writes = [write for group in groups for write in group]
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            retry_s = _FIRST_RETRY_S
            while writes:
                with self._connection_lock:
                    outcomes = self._timed_commit(connection, writes)
                refused = outcomes[0]  # a batch that could not start fails whole, so its first says
                if (
                    not (isinstance(refused, _NotStarted) and refused.busy)
                    or time.monotonic() + retry_s > deadline
                ):
                    settle(((w.loop, w.future) for w in writes), outcomes)
                    break
                # Another process holds the write lock. Nothing was written: wait, then try
                # again with everything that has queued up meanwhile, in order, in one batch.
                time.sleep(retry_s)
                retry_s = min(2 * retry_s, _LAST_RETRY_S)
                more, stop = self._take([])
                groups += more
                writes += [write for group in more for write in group]
                stopping = stopping or stop
            with self._lock:
                self._queued -= len(groups)

    def _take(self, batch: list[list[_Write] | None]) -> tuple[list[list[_Write]], bool]:
        """``batch`` and every write group waiting in the queue; and whether close() asked to stop."""
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stopping = bool(batch) and batch[-1] is None  # close() enqueues the stop marker last of all
        return [group for group in batch if group is not None], stopping

    def _timed_commit(
        self, connection: sqlite3.Connection, writes: list[_Write]
    ) -> list[StorageError | None]:
        """Commit a batch, timed for :class:`.handoff.CommitPace`; the caller holds the connection lock."""
        began = time.perf_counter()
        try:
            outcomes = self._commit(connection, writes)
        except Exception as exc:  # a failed rollback: never leave a caller waiting
            outcomes = [self._stop_writing(exc)] * len(writes)
        self._pace.record(time.perf_counter() - began)
        return outcomes

    def _stop_writing(self, exc: Exception) -> StorageError:
        """Mark the store broken after an unexpected failure; the error every later write gets."""
        self._broken = StorageError(f"the store at {self._path} failed and stopped writing: {exc}")
        return self._broken

    def _commit(self, connection: sqlite3.Connection, writes: list[_Write]) -> list[StorageError | None]:
        """Write a batch durably; returns each caller's outcome.

        A batch of appends only (the common case) commits as one INSERT into the ``appends``
        view in autocommit mode (see :mod:`.sqlite_schema`): its continuation checks run
        against the in-memory next index first. Anything else, a batch too large for one
        statement, or a statement refused before anything was written (a constraint, a full
        disk) takes the explicit transaction, with one savepoint per caller if need be.
        """
        if self._broken is not None:
            return [self._broken] * len(writes)
        try:
            plan = self._plan_appends(connection, writes)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            return [_not_started(self._path, exc)] * len(writes)
        if plan is not None and len(plan.rows) <= ROWS_PER_STATEMENT:
            outcomes = self._commit_one_statement(connection, writes, plan)
            if outcomes is not None:
                return outcomes
            plan = None  # undone whole: the next indexes were dropped, so plan again
        return self._commit_transaction(connection, writes, plan)

    def _commit_one_statement(
        self, connection: sqlite3.Connection, writes: list[_Write], plan: _Plan
    ) -> list[StorageError | None] | None:
        """Commit a planned batch as one statement; None when the transaction path must retry it."""
        if plan.rows:
            try:
                insert_rows(connection, _INSERT_APPENDS, "", plan.rows)
            except sqlite3.Error as exc:
                if _is_busy(exc):
                    return [_not_started(self._path, exc)] * len(writes)
                if isinstance(exc, sqlite3.IntegrityError) or _primary_code(exc) == sqlite3.SQLITE_FULL:
                    self._next_index.clear()  # the statement was undone whole; look indexes up again
                    return None
                return self._break(exc, writes)
            self._commits += 1
        self._count(writes, plan.outcomes)
        self._next_index.update(plan.next_index)
        return plan.outcomes

    def _commit_transaction(
        self, connection: sqlite3.Connection, writes: list[_Write], plan: _Plan | None
    ) -> list[StorageError | None]:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [_not_started(self._path, exc)] * len(writes)
        outcomes, advanced = self._write_batch(connection, writes, plan)
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return self._break(exc, writes)
        self._commits += 1
        self._count(writes, outcomes)
        if advanced is None:
            self._next_index.clear()  # a delete or an unusual batch: look indexes up again
        else:
            self._next_index.update(advanced)
        return outcomes

    def _break(self, exc: sqlite3.Error, writes: list[_Write]) -> list[StorageError | None]:
        self._broken = StorageError(
            f"committing to {self._path} failed ({exc}), so whether the last writes reached the disk "
            "is unknown; the store refuses further writes, restart to recover from the log"
        )
        return [self._broken] * len(writes)

    def _count(self, writes: list[_Write], outcomes: Sequence[StorageError | None]) -> None:
        self._appended_entries += sum(
            w.entries for w, error in zip(writes, outcomes, strict=True) if error is None
        )

    def _write_batch(
        self, connection: sqlite3.Connection, writes: list[_Write], plan: _Plan | None
    ) -> tuple[list[StorageError | None], dict[str, int] | None]:
        """Apply a batch inside a transaction; each caller's outcome and the new next indexes.

        Appends only (``plan``, made here if the caller has none): checked against the next
        index and inserted with a few statements, in a savepoint. Anything else, or an
        error: one savepoint per caller, so a failing write is undone alone.
        """
        if plan is None:
            plan = self._plan_appends(connection, writes)
        if plan is not None:
            connection.execute("SAVEPOINT fast")
            try:
                insert_rows(connection, _INSERT_APPENDS, "", plan.rows)
            except sqlite3.Error:
                connection.execute("ROLLBACK TO fast")
                connection.execute("RELEASE fast")
            else:
                connection.execute("RELEASE fast")
                return plan.outcomes, plan.next_index
        outcomes = [_apply(connection, write) for write in writes]
        return outcomes, None

    def _plan_appends(self, connection: sqlite3.Connection, writes: list[_Write]) -> _Plan | None:
        """The plan of a batch of appends only; None if the batch holds any other write."""
        appends = [w.append for w in writes if w.append is not None]
        return self._plan(connection, appends) if len(appends) == len(writes) else None

    def _plan(self, connection: sqlite3.Connection, appends: list[_Append]) -> _Plan:
        """Check that each append continues its session's log; the rows of those that do."""
        plan = _Plan([], [], {})
        for append in appends:
            sid = append.session_id
            expected = plan.next_index.get(sid)
            if expected is None:
                expected = self._next_index.get(sid)
            if expected is None:
                expected = statements.next_index(sid, connection)
            if append.rows and append.rows[0].idx != expected:
                plan.outcomes.append(continuation_error(sid, expected, append.rows[0].idx))
                plan.next_index.setdefault(sid, expected)
                continue
            plan.outcomes.append(None)
            plan.next_index[sid] = expected + len(append.rows)
            if not append.rows:  # a summary alone
                plan.rows.append((sid, *_NO_ENTRY, append.summary))
            last_row = len(append.rows) - 1
            plan.rows.extend(
                (sid, *row, append.summary if i == last_row else None) for i, row in enumerate(append.rows)
            )
        return plan

    # -- reads -----------------------------------------------------------------------------

    async def read(
        self, session_id: str, start_index: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        check_limit(limit)
        sql = f"SELECT {ENTRY_COLUMNS} FROM entries WHERE session_id = ? AND idx >= ? ORDER BY idx LIMIT ?"
        params = (session_id, start_index, -1 if limit is None else limit)
        return await self._read(partial(statements.select_entries, sql, session_id, params))

    async def read_streamable(self, session_id: str, after_ordinal: int, limit: int) -> list[HistoryEntry]:
        check_limit(limit)
        sql = f"SELECT {ENTRY_COLUMNS} FROM entries WHERE {_AFTER_ORDINAL} ORDER BY idx LIMIT ?"
        params = (session_id, after_ordinal, after_ordinal, limit)
        return await self._read(partial(statements.select_entries, sql, session_id, params))

    async def read_stream_bytes(
        self, session_id: str, after_ordinal: int, limit: int
    ) -> list[tuple[int, bytes]]:
        check_limit(limit)
        sql = f"SELECT ordinal, envelope FROM entries WHERE {_AFTER_ORDINAL} ORDER BY idx LIMIT ?"
        params = (session_id, after_ordinal, after_ordinal, limit)
        return await self._read(partial(statements.select_frames, sql, params))

    async def sessions(self) -> AsyncIterator[tuple[str, list[HistoryEntry]]]:
        after = ""
        while True:
            page = await self._read(partial(statements.session_ids, after))
            for session_id in page:
                history = await self.read(session_id)
                if history:  # deleted while the caller was busy with an earlier session
                    yield session_id, history
            if len(page) < statements.SESSION_PAGE:
                return
            after = page[-1]

    async def documents(self, registry: str) -> Mapping[str, str]:
        return await self._read(partial(statements.select_documents, registry))

    async def summaries(self) -> AsyncIterator[tuple[str, str]]:
        after = ""
        while True:
            page = await self._read(partial(statements.summary_page, after))
            for item in page:
                yield item
            if len(page) < statements.SUMMARY_PAGE:
                return
            after = page[-1][0]

    async def unsummarized(self) -> list[str]:
        return await self._read(statements.unsummarized)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        assert self._reader_pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, self._run_read, query)

    def _run_read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._readers.get()  # never waits: the pool has one thread per connection
        try:
            return query(connection)
        except sqlite3.Error as exc:
            raise StorageError(f"reading {self._path} failed: {exc}") from exc
        finally:
            self._readers.put(connection)


# -- running one write on the writer's connection ------------------------------------------------


def _apply(connection: sqlite3.Connection, write: _Write) -> StorageError | None:
    """Run one caller's write in a savepoint; on failure undo it alone and report why."""
    connection.execute("SAVEPOINT write")
    try:
        write.apply(connection)
    except (sqlite3.Error, StorageError) as exc:
        connection.execute("ROLLBACK TO write")
        connection.execute("RELEASE write")
        if isinstance(exc, StorageError):
            return exc
        error = StorageError(f"the write was refused and nothing of it was stored: {exc}")
        error.__cause__ = exc
        return error
    connection.execute("RELEASE write")
    return None


# -- helpers ------------------------------------------------------------------------------


class _NotStarted(StorageError):
    """The write transaction could not start (usually: another process holds the lock)."""

    def __init__(self, message: str, *, busy: bool) -> None:
        super().__init__(message)
        self.busy = busy  # for a lock held elsewhere: worth waiting for


def _not_started(path: Path, exc: sqlite3.Error) -> StorageError:
    message = f"cannot start a write transaction on {path}: {exc}; nothing was written"
    return _NotStarted(message, busy=_is_busy(exc))


def _primary_code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock this one needs."""
    return _primary_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
