"""The Store contract, run against every implementation.

Whatever a runtime can observe through :class:`pymacp.storage.Store` must be the same on
the memory store and on SQLite: ordering, filtering of internal entries, limits, refusal
of appends that do not continue a session's log (with nothing stored), registries,
sessions() for recovery, retention and close semantics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from storage_entries import T0, assert_same, history, session_id

from pymacp.kernel import EntryKind, HistoryEntry
from pymacp.storage import EXTENSION_MODES, POLICIES, MemoryStore, SqliteStore, StorageError, Store

StoreFactory = Callable[[], Store]
Scenario = Callable[[Store], Awaitable[None]]
SID = session_id(1)
OTHER = session_id(2)


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "memory":
        return MemoryStore
    return lambda: SqliteStore(tmp_path / "data" / "macp.db")


def run(make_store: StoreFactory, scenario: Scenario) -> None:
    async def main() -> None:
        store = make_store()
        await store.open()
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


def streamable(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    return [e for e in entries if e.kind is not EntryKind.INTERNAL]


# -- append and read ---------------------------------------------------------------------------


def test_appends_read_back_in_index_order_with_bindings_intact(make_store: StoreFactory) -> None:
    full = history(SID, 12)

    async def scenario(store: Store) -> None:
        await store.append(SID, full[:1])
        await store.append(SID, full[1:5])
        await store.append(SID, full[5:])
        stored = await store.read(SID)
        assert_same(stored, full)
        assert stored[0].binding is not None and stored[0].binding.policy.registered_at_unix_ms == T0 - 5
        assert [e.index for e in stored] == list(range(12))

    run(make_store, scenario)


def test_read_honours_start_index_and_limit(make_store: StoreFactory) -> None:
    full = history(SID, 10)

    async def scenario(store: Store) -> None:
        await store.append(SID, full)
        assert await store.read(SID, 4) == full[4:]
        assert await store.read(SID, 2, 3) == full[2:5]
        assert await store.read(SID, 8, 100) == full[8:]
        assert await store.read(SID, 10) == []
        assert await store.read(SID, 0, 0) == []
        assert await store.read(session_id(99)) == []
        with pytest.raises(ValueError, match="limit"):
            await store.read(SID, 0, -1)

    run(make_store, scenario)


def test_read_streamable_skips_internal_entries_and_is_exclusive(make_store: StoreFactory) -> None:
    full = history(SID, 16)
    visible = streamable(full)
    assert len(visible) < len(full)  # the fixture really has INTERNAL entries

    async def scenario(store: Store) -> None:
        await store.append(SID, full)
        assert await store.read_streamable(SID, 0, 100) == visible
        assert [e.ordinal for e in visible] == list(range(1, len(visible) + 1))
        assert await store.read_streamable(SID, 3, 100) == visible[3:]
        assert await store.read_streamable(SID, 3, 2) == visible[3:5]
        assert await store.read_streamable(SID, len(visible), 10) == []
        assert await store.read_streamable(SID, 0, 0) == []
        assert await store.read_streamable(session_id(99), 0, 10) == []
        with pytest.raises(ValueError, match="limit"):
            await store.read_streamable(SID, 0, -5)

    run(make_store, scenario)


def test_reads_after_every_ordinal_return_the_rest_of_the_stream_in_order(make_store: StoreFactory) -> None:
    other = session_id(7)
    full, interleaved = history(SID, 40), history(other, 9)
    visible = streamable(full)

    async def scenario(store: Store) -> None:
        # Appended in pieces, between another session's appends, as a busy runtime does.
        for start in range(0, 40, 5):
            await store.append(SID, full[start : start + 5])
            if start // 5 < 3:
                await store.append(other, interleaved[start // 5 * 3 : start // 5 * 3 + 3])
        for after in range(len(visible) + 1):
            for limit in (1, 3, 100):
                expected = visible[after : after + limit]
                assert await store.read_streamable(SID, after, limit) == expected, (after, limit)
                frames = await store.read_stream_bytes(SID, after, limit)
                assert frames == [(e.ordinal, e.envelope.to_bytes()) for e in expected], (after, limit)
        assert await store.read_streamable(other, 0, 100) == streamable(interleaved)

    run(make_store, scenario)


def test_each_session_keeps_the_summary_of_its_latest_append(make_store: StoreFactory) -> None:
    full, other = history(SID, 6), history(OTHER, 2)

    async def scenario(store: Store) -> None:
        await store.append(SID, full[:2], "sid after 2")
        await store.append(OTHER, other)  # no summary: the session is unsummarized
        assert [item async for item in store.summaries()] == [(SID, "sid after 2")]
        assert await store.unsummarized() == [OTHER]
        # Concurrent appends share a batch; each session's latest summary wins.
        await asyncio.gather(
            store.append(SID, full[2:4], "sid after 4"),
            store.append(OTHER, [], "other, summary only"),
        )
        await store.append(SID, full[4:], "sid after 6")
        assert [item async for item in store.summaries()] == [
            (SID, "sid after 6"),
            (OTHER, "other, summary only"),
        ]
        assert await store.unsummarized() == []
        assert await store.read(SID) == full and await store.read(OTHER) == other

    run(make_store, scenario)


def test_empty_append_is_a_no_op(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        await store.append(SID, [])
        assert await store.read(SID) == []
        assert [sid async for sid, _ in store.sessions()] == []

    run(make_store, scenario)


def test_an_append_overlapping_stored_indexes_fails_and_stores_nothing(make_store: StoreFactory) -> None:
    full = history(SID, 6)

    async def scenario(store: Store) -> None:
        await store.append(SID, full[:3])
        with pytest.raises(StorageError, match="already has an entry at index 2"):
            await store.append(SID, full[2:5])
        assert await store.read(SID) == full[:3]  # entries 3 and 4 of that call were not stored
        await store.append(SID, full[3:])
        assert await store.read(SID) == full

    run(make_store, scenario)


def test_an_append_leaving_a_gap_fails_and_stores_nothing(make_store: StoreFactory) -> None:
    full = history(SID, 6)

    async def scenario(store: Store) -> None:
        with pytest.raises(StorageError, match="would leave a gap"):
            await store.append(SID, full[1:3])
        assert await store.read(SID) == []
        await store.append(SID, full[:2])
        with pytest.raises(StorageError, match="next append must start at index 2"):
            await store.append(SID, full[4:])
        assert await store.read(SID) == full[:2]

    run(make_store, scenario)


def _bad_batches() -> dict[str, tuple[str, list[HistoryEntry]]]:
    full = history(SID, 6)
    internal = full[3]
    client = full[1]
    return {
        "not consecutive": ("consecutive indexes; expected 1, got 2", [full[0], full[2]]),
        "internal with ordinal": ("must have ordinal 0", [*full[:3], replace(internal, ordinal=3)]),
        "client without ordinal": ("needs an ordinal >= 1", [full[0], replace(client, ordinal=0)]),
        "negative index": ("start at 0", [replace(full[0], index=-1)]),
    }


@pytest.mark.parametrize("case", sorted(_bad_batches()))
def test_malformed_appends_are_refused_whole(make_store: StoreFactory, case: str) -> None:
    message, entries = _bad_batches()[case]

    async def scenario(store: Store) -> None:
        with pytest.raises(StorageError, match=message):
            await store.append(SID, entries)
        assert await store.read(SID) == []

    run(make_store, scenario)


def test_an_empty_session_id_is_refused(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        with pytest.raises(StorageError, match="empty session id"):
            await store.append("", history("", 1))

    run(make_store, scenario)


def test_sessions_are_independent_logs(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        await store.append(SID, history(SID, 3))
        await store.append(OTHER, history(OTHER, 5))
        assert await store.read(SID) == history(SID, 3)
        assert await store.read(OTHER) == history(OTHER, 5)

    run(make_store, scenario)


def test_concurrent_sessions_keep_their_own_order(make_store: StoreFactory) -> None:
    sessions = {session_id(n): history(session_id(n), 24) for n in range(40)}

    async def writer(store: Store, sid: str) -> None:
        entries = sessions[sid]
        for start in range(0, len(entries), 3):  # appends of one session are sequential, as in the runtime
            await store.append(sid, entries[start : start + 3])

    async def scenario(store: Store) -> None:
        await asyncio.gather(*(writer(store, sid) for sid in sessions))
        for sid, entries in sessions.items():
            assert_same(await store.read(sid), entries)

    run(make_store, scenario)


# -- recovery and retention --------------------------------------------------------------------


def test_sessions_yields_every_history_once(make_store: StoreFactory) -> None:
    expected = {session_id(n): history(session_id(n), n + 1) for n in range(7)}

    async def scenario(store: Store) -> None:
        for sid, entries in reversed(expected.items()):
            await store.append(sid, entries)
        seen = [(sid, entries) async for sid, entries in store.sessions()]
        assert [sid for sid, _ in seen] == sorted(expected)
        for sid, entries in seen:
            assert_same(entries, expected[sid])

    run(make_store, scenario)


def test_a_session_deleted_during_iteration_is_not_yielded(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        for n in range(3):
            await store.append(session_id(n), history(session_id(n), 2))
        seen = []
        async for sid, _ in store.sessions():
            seen.append(sid)
            if sid == session_id(0):
                await store.delete_session(session_id(1))
        assert seen == [session_id(0), session_id(2)]

    run(make_store, scenario)


def test_delete_session_removes_only_that_history(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        await store.append(SID, history(SID, 4))
        await store.append(OTHER, history(OTHER, 2))
        await store.delete_session(SID)
        await store.delete_session(session_id(99))  # unknown: nothing to do
        assert await store.read(SID) == []
        assert await store.read_streamable(SID, 0, 10) == []
        assert await store.read(OTHER) == history(OTHER, 2)
        assert [sid async for sid, _ in store.sessions()] == [OTHER]
        await store.append(SID, history(SID, 1))  # a deleted session's log starts again at 0
        assert await store.read(SID) == history(SID, 1)

    run(make_store, scenario)


# -- registries --------------------------------------------------------------------------------


def test_documents_put_replace_list_and_delete(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        assert await store.documents(POLICIES) == {}
        await store.put_document(POLICIES, "p.b", '{"v":1}')
        await store.put_document(POLICIES, "p.a", '{"v":2}')
        await store.put_document(POLICIES, "p.b", '{"v":3}')
        await store.put_document(EXTENSION_MODES, "ext.x.v1", '{"mode":"ext.x.v1"}')
        assert await store.documents(POLICIES) == {"p.a": '{"v":2}', "p.b": '{"v":3}'}
        assert await store.documents(EXTENSION_MODES) == {"ext.x.v1": '{"mode":"ext.x.v1"}'}
        await store.delete_document(POLICIES, "p.a")
        await store.delete_document(POLICIES, "p.unknown")
        await store.delete_document("no-such-registry", "p.b")
        assert await store.documents(POLICIES) == {"p.b": '{"v":3}'}

    run(make_store, scenario)


def test_documents_returns_a_copy(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        await store.put_document(POLICIES, "p", "{}")
        listing = await store.documents(POLICIES)
        assert isinstance(listing, dict)
        listing["q"] = "{}"
        assert await store.documents(POLICIES) == {"p": "{}"}

    run(make_store, scenario)


# -- lifecycle ---------------------------------------------------------------------------------


def test_open_is_idempotent(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        await store.append(SID, history(SID, 2))
        await store.open()
        assert await store.read(SID) == history(SID, 2)

    run(make_store, scenario)


def test_using_a_store_before_open_fails(make_store: StoreFactory) -> None:
    async def main() -> None:
        store = make_store()
        with pytest.raises(StorageError, match="not open"):
            await store.append(SID, history(SID, 1))
        with pytest.raises(StorageError, match="not open"):
            await store.read(SID)
        await store.close()

    asyncio.run(main())


def test_everything_fails_after_close(make_store: StoreFactory) -> None:
    async def main() -> None:
        store = make_store()
        await store.open()
        await store.append(SID, history(SID, 1))
        await store.close()
        await store.close()  # closing twice is harmless
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.append(SID, history(SID, 2)[1:]),
            lambda: store.append(SID, []),
            lambda: store.read(SID),
            lambda: store.read_streamable(SID, 0, 10),
            lambda: store.delete_session(SID),
            lambda: store.put_document(POLICIES, "p", "{}"),
            lambda: store.delete_document(POLICIES, "p"),
            lambda: store.documents(POLICIES),
            store.open,
        ]
        for call in calls:
            with pytest.raises(StorageError, match="closed"):
                await call()
        with pytest.raises(StorageError, match="closed"):
            async for _ in store.sessions():
                pass

    asyncio.run(main())
