"""The runtime's metrics export a store's own counters exactly when the store keeps them."""

from __future__ import annotations

from pathlib import Path

from pymacp.runtime.metrics import Metrics
from pymacp.storage import POLICIES, CommitCounts, MemoryStore, SqliteStore

STORAGE_SERIES = (
    "macp_storage_commits_total",
    "macp_storage_inline_commits_total",
    "macp_storage_entries_total",
)


async def test_a_sqlite_store_s_counters_are_exported_as_they_stand(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    try:
        metrics = Metrics()
        metrics.watch_store(store)
        sample = metrics.registry.get_sample_value
        assert sample("macp_storage_commits_total") == 0
        await store.put_document(POLICIES, "p1", "{}")
        await store.put_document(POLICIES, "p2", "{}")
        assert store.commits == 2  # read when scraped, not when registered
        assert sample("macp_storage_commits_total") == 2
        assert sample("macp_storage_inline_commits_total") == store.inline_commits
        assert sample("macp_storage_entries_total") == store.appended_entries == 0
    finally:
        await store.close()


def test_a_store_that_keeps_no_counters_adds_no_storage_series() -> None:
    store = MemoryStore()
    assert not isinstance(store, CommitCounts)
    metrics = Metrics()
    metrics.watch_store(store)
    assert [metrics.registry.get_sample_value(name) for name in STORAGE_SERIES] == [None, None, None]
