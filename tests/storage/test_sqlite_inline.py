"""The SQLite store's idle shortcut: a lone write on an idle event loop commits on that loop.

Which path a write took is observed through ``inline_commits`` (a subset of ``commits``).
The shortcut needs a measured commit pace below the store's limit; tests that want it pass
a generous ``inline_commit_limit_s`` so a slow CI disk cannot change the outcome, and tests
that rule it out through the pace pass a limit no commit meets.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from storage_entries import history, session_id

from pymacp.storage import SqliteStore
from pymacp.storage.handoff import CommitPace, loop_is_idle

GENEROUS = 60.0  # seconds: every commit counts as quick


async def opened(path: Path, limit_s: float = GENEROUS) -> SqliteStore:
    store = SqliteStore(path, inline_commit_limit_s=limit_s)
    await store.open()
    return store


def test_one_writer_at_a_time_commits_on_the_event_loop(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path / "macp.db")
        try:
            sids = [session_id(n) for n in range(5)]
            for sid in sids:
                await store.append(sid, history(sid, 3))
            # The first commit goes through the writer thread: until then the pace is unknown.
            assert store.commits == 5
            assert store.inline_commits == 4
            for sid in sids:
                assert await store.read(sid) == history(sid, 3)
        finally:
            await store.close()
        reopened = await opened(tmp_path / "macp.db")
        try:
            assert await reopened.read(sids[-1]) == history(sids[-1], 3)
        finally:
            await reopened.close()

    asyncio.run(main())


def test_writes_that_arrive_together_share_the_writer_thread(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path / "macp.db")
        try:
            await store.append(session_id(0), history(session_id(0), 2))  # measures the pace
            sids = [session_id(n) for n in range(1, 21)]
            await asyncio.gather(*(store.append(sid, history(sid, 2)) for sid in sids))
            assert store.inline_commits == 0
            assert store.commits < 1 + len(sids)  # group commit packed them
            assert store.appended_entries == 2 * 21
        finally:
            await store.close()

    asyncio.run(main())


def test_a_busy_event_loop_leaves_commits_to_the_writer_thread(tmp_path: Path) -> None:
    async def spin(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0)  # always something ready to run on the loop

    async def main() -> None:
        store = await opened(tmp_path / "macp.db")
        stop = asyncio.Event()
        spinner = asyncio.create_task(spin(stop))
        try:
            for n in range(5):
                await store.append(session_id(n), history(session_id(n), 2))
            assert store.commits == 5
            assert store.inline_commits == 0
        finally:
            stop.set()
            await spinner
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("limit_s", [0.0, 1e-9])  # off, and a limit no real commit is under
def test_slow_commits_stay_off_the_event_loop(tmp_path: Path, limit_s: float) -> None:
    async def main() -> None:
        store = await opened(tmp_path / "macp.db", limit_s)
        try:
            for n in range(5):
                await store.append(session_id(n), history(session_id(n), 2))
            assert store.inline_commits == 0
        finally:
            await store.close()

    asyncio.run(main())


def test_a_lock_held_by_another_process_never_stalls_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "macp.db"

    async def main() -> None:
        store = await opened(path)
        try:
            await store.append(session_id(0), history(session_id(0), 2))
            await store.append(session_id(1), history(session_id(1), 2))
            assert store.inline_commits == 1  # the shortcut is in use from here on
            raw = sqlite3.connect(path, isolation_level=None)
            raw.execute("BEGIN IMMEDIATE")  # the write lock, as a second process could hold it
            pending = asyncio.create_task(store.append(session_id(2), history(session_id(2), 2)))
            started = time.monotonic()
            await asyncio.sleep(0.2)
            assert time.monotonic() - started < 1.0  # the loop ran on; the writer thread waits
            assert not pending.done()
            raw.execute("COMMIT")
            raw.close()
            await pending
            assert store.inline_commits == 1
            assert await store.read(session_id(2)) == history(session_id(2), 2)
            await store.append(session_id(3), history(session_id(3), 2))
            assert store.inline_commits == 2  # and the shortcut works again afterwards
        finally:
            await store.close()

    asyncio.run(main())


def test_the_pace_is_a_running_average_against_the_limit() -> None:
    pace = CommitPace(0.001)
    assert not pace.quick  # nothing measured yet
    pace.record(0.0002)
    assert pace.quick
    for _ in range(40):
        pace.record(0.01)  # the disk slowed down
    assert not pace.quick
    for _ in range(40):
        pace.record(0.0001)
    assert pace.quick
    with pytest.raises(ValueError, match="inline commit limit"):
        CommitPace(-1)


def test_an_idle_loop_is_told_from_one_with_work_ready() -> None:
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        idle = loop_is_idle(loop)
        loop.call_soon(lambda: None)
        return idle, loop_is_idle(loop)

    # This reads asyncio's private ready queue; if a Python release renames it, this test
    # fails instead of the shortcut silently switching itself off.
    assert asyncio.run(main()) == (True, False)
    assert not loop_is_idle(object())  # type: ignore[arg-type]
