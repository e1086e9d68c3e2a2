"""Large stored histories, written straight into a store instead of over gRPC.

The replay and recovery scenarios need sessions holding up to a million accepted
envelopes; sending them through the runtime would take longer than the benchmark itself.
So the history is made the way the runtime makes it, only in-process: the real kernel
decides every envelope (SessionStart, TaskRequest, TaskAccept, then TaskUpdates, with the
same builders the load clients use), and the resulting ``Accepted.entries`` are appended
to a :class:`~pymacp.storage.sqlite.SqliteStore` at ``<data_dir>/macp.sqlite3``, the file
``pymacp serve`` opens, together with the session summary the runtime writes beside every
append (:class:`~pymacp.runtime.summary.SessionSummary`; imported only to write the stored
format exactly, as the runtime would have). Many sessions' appends are in flight at once
so the store's group commit packs them into few transactions, and the store runs with
``synchronous=OFF``: durability of the fixture itself does not matter, only what ends up
in the file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from macp.v1 import envelope_pb2

from pymacp.kernel import Accepted, Envelope, HistoryEntry, Identity, Kernel, Session
from pymacp.runtime.summary import SessionSummary
from pymacp.storage.sqlite import SqliteStore

from .processes import BenchError
from .workload import (
    INITIATOR,
    SETUP_ENVELOPES,
    WORKER,
    accept_envelope,
    new_session_id,
    request_envelope,
    start_envelope,
    update_envelope,
)

DATABASE_FILE = "macp.sqlite3"  # the file name pymacp serve uses inside MACP_DATA_DIR
APPENDS_IN_FLIGHT = 64
PROGRESS_FROM = 100_000  # envelopes: smaller fixtures are written without progress lines


@dataclass(frozen=True, slots=True)
class Fixture:
    data_dir: Path
    session_ids: tuple[str, ...]
    envelopes: int
    build_s: float

    @property
    def database(self) -> Path:
        return self.data_dir / DATABASE_FILE


def _decide(
    kernel: Kernel, session: Session | None, sender: str, env: envelope_pb2.Envelope, now_ms: int
) -> Accepted:
    decision = kernel.decide(session, Identity(sender), Envelope.from_proto(env), now_ms)
    if not isinstance(decision, Accepted):
        raise BenchError(f"the kernel did not accept the fixture's {env.message_type}: {decision}")
    return decision


def session_history(
    kernel: Kernel, session_id: str, envelopes: int, now_ms: int
) -> tuple[list[HistoryEntry], Session]:
    """The entries and final state of one Task session of ``envelopes`` accepted envelopes (>= the setup)."""
    if envelopes < SETUP_ENVELOPES:
        raise ValueError(f"a fixture session holds at least {SETUP_ENVELOPES} envelopes")
    entries: list[HistoryEntry] = []
    session: Session | None = None
    steps = [
        (INITIATOR, start_envelope(session_id)),
        (INITIATOR, request_envelope(session_id)),
        (WORKER, accept_envelope(session_id)),
    ]
    for sender, env in steps:
        accepted = _decide(kernel, session, sender, env, now_ms)
        entries.extend(accepted.entries)
        session = accepted.session
    for _ in range(envelopes - SETUP_ENVELOPES):
        accepted = _decide(kernel, session, WORKER, update_envelope(session_id), now_ms)
        entries.extend(accepted.entries)
        session = accepted.session
    assert session is not None
    return entries, session


def summary_text(kernel: Kernel, session: Session) -> str:
    """The summary the runtime stores with a session's appends."""
    return SessionSummary.of(session, kernel.next_deadline(session)).to_json()


async def _build(data_dir: Path, sessions: int, per_session: int, progress: Callable[[str], None]) -> Fixture:
    began = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(data_dir / DATABASE_FILE, synchronous="OFF")
    await store.open()
    kernel = Kernel()
    now_ms = int(time.time() * 1000)
    session_ids = tuple(new_session_id() for _ in range(sessions))
    in_flight: set[asyncio.Task[None]] = set()
    step = max(1, sessions // 10)
    try:
        for number, session_id in enumerate(session_ids, 1):
            entries, session = session_history(kernel, session_id, per_session, now_ms)
            summary = summary_text(kernel, session)
            in_flight.add(asyncio.create_task(store.append(session_id, entries, summary)))
            if len(in_flight) >= APPENDS_IN_FLIGHT:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            if number % step == 0 and sessions * per_session >= PROGRESS_FROM:
                progress(f"    fixture: {number:,} of {sessions:,} sessions written")
        await asyncio.gather(*in_flight)
    finally:
        await store.close()
    return Fixture(data_dir, session_ids, sessions * per_session, time.monotonic() - began)


def build_history(
    data_dir: Path, sessions: int, per_session: int, progress: Callable[[str], None] = lambda _: None
) -> Fixture:
    """Write ``sessions`` Task sessions of ``per_session`` accepted envelopes each into ``data_dir``."""
    return asyncio.run(_build(data_dir, sessions, per_session, progress))
