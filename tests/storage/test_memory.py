"""What only the memory store does: keep nothing beyond the process, share nothing with callers."""

from __future__ import annotations

import asyncio

import pytest
from storage_entries import history, session_id

from pymacp.storage import POLICIES, MemoryStore, StorageError

SID = session_id(1)


def test_nothing_outlives_the_store() -> None:
    async def main() -> None:
        first = MemoryStore()
        await first.open()
        await first.append(SID, history(SID, 3))
        await first.put_document(POLICIES, "p", "{}")
        await first.close()
        second = MemoryStore()
        await second.open()
        assert await second.read(SID) == []
        assert await second.documents(POLICIES) == {}
        assert [sid async for sid, _ in second.sessions()] == []

    asyncio.run(main())


def test_reads_return_lists_the_caller_may_change() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.open()
        await store.append(SID, history(SID, 4))
        read = await store.read(SID)
        read.clear()
        streamed = await store.read_streamable(SID, 0, 10)
        streamed.clear()
        async for _, entries in store.sessions():
            entries.clear()
        assert await store.read(SID) == history(SID, 4)

    asyncio.run(main())


def test_a_failed_append_to_a_new_session_leaves_no_session_behind() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.open()
        with pytest.raises(StorageError, match="gap"):
            await store.append(SID, history(SID, 3)[1:])
        assert [sid async for sid, _ in store.sessions()] == []

    asyncio.run(main())
