"""The store's rules, on SQLite and on PostgreSQL: migrations, atomic idempotency, gapless
per-run numbering, message-id deduplication, status changes recorded with their event."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_backends import postgres_schema

from pymacp.console.events import NewEvent, console_event
from pymacp.console.store import (
    LATEST_VERSION,
    NewRun,
    RunChanges,
    SessionTaken,
    SqlStore,
    StoreError,
    make_store,
)

NOW = 1_700_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'console.db'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    s = make_store(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def new_run(run_id: str, session_id: str | None = None, **fields: object) -> NewRun:
    values: dict[str, object] = {
        "run_id": run_id,
        "session_id": session_id or f"session-{run_id}",
        "status": "queued",
        "source": "api",
        "mode_name": "macp.mode.decision.v1",
        "participants": ("lead", "alice"),
        "session_state": None,
        "descriptor": {"session": {"metadata": {"cancelCallback": {"url": "http://x", "bearer": "***"}}}},
        "cancel_bearer": "secret",
        "idempotency_key": None,
        "tags": ("a",),
        "created_at_ms": NOW,
        **fields,
    }
    return NewRun(**values)  # type: ignore[arg-type]


def envelope(message_id: str) -> NewEvent:
    return NewEvent(
        type="message.received",
        timestamp_ms=NOW,
        data={"message_id": message_id},
        message_id=message_id,
        message_type="Note",
        sender="lead",
        takes_ordinal=True,
    )


async def test_migrations_apply_once_and_refuse_a_newer_schema(store_url: str) -> None:
    first = make_store(store_url)
    await first.open()
    await first.create_run(new_run("r1"), NOW)
    await first.close()
    again = make_store(store_url)
    await again.open()  # nothing to apply; the data is still there
    assert (await again.get_run("r1")) is not None
    await again.close()

    if store_url.startswith("sqlite"):
        path = store_url[len("sqlite:///") :]
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (LATEST_VERSION + 1,))
        newer = make_store(store_url)
        with pytest.raises(StoreError, match="newer than this pymacp knows"):
            await newer.open()
        await newer.close()


async def test_a_created_run_starts_with_its_run_created_event(store: SqlStore) -> None:
    run, created = await store.create_run(new_run("r1"), NOW)
    assert created and (run.status, run.last_seq, run.last_ordinal) == ("queued", 1, 0)
    assert run.participants == ("lead", "alice") and run.tags == ("a",)
    (event,) = await store.events("r1", 0, 10)
    assert (event.seq, event.type, event.ordinal, event.message_id) == (1, "run.created", None, None)
    assert event.data["sessionId"] == "session-r1"
    assert await store.cancel_bearer("r1") == "secret"
    assert "secret" not in repr(run.to_json())


async def test_an_idempotency_key_is_atomic(store: SqlStore) -> None:
    attempts = [new_run(f"r{i}", f"s{i}", idempotency_key="k") for i in range(8)]
    results = await asyncio.gather(*(store.create_run(a, NOW) for a in attempts))
    assert [created for _, created in results].count(True) == 1
    assert len({run.run_id for run, _ in results}) == 1
    assert (
        len(
            await store.list_runs(
                status=None, mode=None, source=None, session_id=None, before_position=None, limit=50
            )
        )
        == 1
    )


async def test_one_session_one_run_but_an_api_run_adopts_a_discovered_one(store: SqlStore) -> None:
    await store.create_run(new_run("r1", "s1"), NOW)
    with pytest.raises(SessionTaken) as taken:
        await store.create_run(new_run("r2", "s1"), NOW)
    assert taken.value.run.run_id == "r1"

    await store.create_run(new_run("d1", "s2", source="discovered", descriptor=None, status="running"), NOW)
    adopted, created = await store.create_run(new_run("r3", "s2", idempotency_key="k2"), NOW + 5)
    assert created and adopted.run_id == "d1"
    assert (adopted.source, adopted.idempotency_key, adopted.status) == ("api", "k2", "running")
    assert adopted.descriptor is not None


async def test_envelopes_are_numbered_without_gaps_and_deduplicated_by_message_id(store: SqlStore) -> None:
    await store.create_run(new_run("r1"), NOW)
    first = await store.append("r1", [envelope("m1"), envelope("m2")], None, NOW)
    assert [(e.seq, e.ordinal) for e in first.events] == [(2, 1), (3, 2)]
    # A resume that started too low re-delivers m2: skipped, and neither seq nor ordinal move.
    again = await store.append("r1", [envelope("m2"), envelope("m3")], None, NOW)
    assert [(e.seq, e.ordinal, e.message_id) for e in again.events] == [(4, 3, "m3")]
    assert (again.run.last_seq, again.run.last_ordinal) == (4, 3)
    nothing = await store.append("r1", [envelope("m1")], None, NOW)
    assert not nothing.changed and nothing.run.last_seq == 4

    events = await store.events("r1", 0, 100)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.seq for e in await store.events("r1", 2, 1)] == [3]


async def test_a_status_change_is_recorded_with_its_event_and_terminal_is_final(store: SqlStore) -> None:
    await store.create_run(new_run("r1"), NOW)
    running = await store.append(
        "r1", [], RunChanges(status="running", reason="open", session_state="SESSION_STATE_OPEN"), NOW + 1
    )
    assert running.run.status == "running" and running.run.session_state == "SESSION_STATE_OPEN"
    (moved,) = running.events
    assert moved.type == "run.status.changed"
    assert moved.data == {
        "from": "queued",
        "to": "running",
        "sessionState": "SESSION_STATE_OPEN",
        "reason": "open",
    }
    idle = RunChanges(
        status="running",
        session_state="SESSION_STATE_OPEN",
        mode_name="macp.mode.decision.v1",
        participants=("lead", "alice"),
    )
    same = await store.append("r1", [], idle, NOW + 2)
    assert not same.changed and same.run.updated_at_ms == NOW + 1  # an idle reconcile writes nothing

    done = await store.append("r1", [], RunChanges(status="failed", error="session expired"), NOW + 3)
    assert (done.run.status, done.run.ended_at_ms, done.run.error) == ("failed", NOW + 3, "session expired")
    after = await store.append("r1", [], RunChanges(status="running"), NOW + 4)
    assert after.run.status == "failed" and not after.changed
    assert [r.run_id for r in await store.unfinished_runs()] == []


async def test_skipping_compacted_history_moves_the_resume_point(store: SqlStore) -> None:
    await store.create_run(new_run("r1"), NOW)
    gap = console_event("stream.gap", NOW, fromOrdinal=1, toOrdinal=5)
    appended = await store.append("r1", [gap], RunChanges(skip_to_ordinal=5), NOW)
    assert appended.run.last_ordinal == 5
    (stored,) = (await store.append("r1", [envelope("m6")], None, NOW)).events
    assert stored.ordinal == 6


async def test_runs_list_newest_first_with_filters_and_a_cursor(store: SqlStore) -> None:
    for i in range(5):
        await store.create_run(new_run(f"r{i}", source="api" if i % 2 else "discovered"), NOW + i)
    everything = await store.list_runs(
        status=None, mode=None, source=None, session_id=None, before_position=None, limit=3
    )
    assert [run.run_id for _, run in everything] == ["r4", "r3", "r2"]
    rest = await store.list_runs(
        status=None, mode=None, source=None, session_id=None, before_position=everything[-1][0], limit=3
    )
    assert [run.run_id for _, run in rest] == ["r1", "r0"]
    api = await store.list_runs(
        status="queued",
        mode="macp.mode.decision.v1",
        source="api",
        session_id=None,
        before_position=None,
        limit=9,
    )
    assert [run.run_id for _, run in api] == ["r3", "r1"]
    one = await store.list_runs(
        status=None, mode=None, source=None, session_id="session-r2", before_position=None, limit=9
    )
    assert [run.run_id for _, run in one] == ["r2"]


async def test_two_writers_on_one_database_never_number_an_event_twice(store_url: str) -> None:
    """Two stores (as two console processes would) appending to one run at once."""
    a, b = make_store(store_url), make_store(store_url)
    await a.open()
    await b.open()
    try:
        await a.create_run(new_run("r1"), NOW)
        writes = [(a if i % 2 else b).append("r1", [envelope(f"m{i % 15}")], None, NOW) for i in range(30)]
        await asyncio.gather(*writes)
        events = await a.events("r1", 0, 100)
    finally:
        await a.close()
        await b.close()
    assert [e.seq for e in events] == list(range(1, 17))
    assert sorted(e.ordinal for e in events if e.ordinal is not None) == list(range(1, 16))
    assert len({e.message_id for e in events if e.message_id}) == 15


def test_database_urls_are_checked() -> None:
    assert make_store("sqlite:///:memory:").dialect == "sqlite"
    assert make_store("postgresql://u@h/db").dialect == "postgresql"
    assert make_store("postgres://u@h/db").dialect == "postgresql"
    for bad in ("mysql://x", "sqlite://relative.db", "sqlite:///", "console.db"):
        with pytest.raises(ValueError, match="database URL"):
            make_store(bad)


async def test_an_unreachable_postgres_is_a_store_error_not_a_crash() -> None:
    store = make_store("postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(StoreError, match=r"PostgreSQL database postgresql://nobody:\*\*\*@127.0.0.1:1/none"):
        await store.open()
    assert not store.ready
    await store.close()
