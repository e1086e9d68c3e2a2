"""Prometheus metrics (series named as the Rust runtime's, so dashboards carry over)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ..storage import CommitCounts

MAX_MODE_LABELS = 1000
OVERFLOW = "_overflow"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_accepted = Counter("macp_messages_accepted", "Accepted envelopes", ["mode"], registry=r)
        self.messages_rejected = Counter(
            "macp_messages_rejected", "Rejected envelopes", ["mode", "code"], registry=r
        )
        self.sessions_started = Counter("macp_sessions_started", "Sessions started", ["mode"], registry=r)
        self.sessions_resolved = Counter("macp_sessions_resolved", "Sessions resolved", ["mode"], registry=r)
        self.sessions_expired = Counter("macp_sessions_expired", "Sessions expired", ["mode"], registry=r)
        self.sessions_cancelled = Counter(
            "macp_sessions_cancelled", "Sessions cancelled", ["mode"], registry=r
        )
        self.sessions_suspended = Counter(
            "macp_sessions_suspended", "Sessions suspended", ["mode"], registry=r
        )
        self.sessions_resumed = Counter("macp_sessions_resumed", "Sessions resumed", ["mode"], registry=r)
        self.commitments_accepted = Counter(
            "macp_commitments_accepted", "Accepted commitments", ["mode"], registry=r
        )
        self.commitments_rejected = Counter(
            "macp_commitments_rejected", "Rejected commitments", ["mode"], registry=r
        )
        self.replay_mismatches = Counter(
            "macp_replay_mismatches", "Sessions whose log did not replay", registry=r
        )
        self.stream_lagged = Counter(
            "macp_stream_lagged", "Subscribers cut off for lagging", ["stream"], registry=r
        )
        self.sessions_loaded = Gauge("macp_sessions_loaded", "Sessions held in memory", registry=r)
        self.append_seconds = Histogram("macp_append_seconds", "Durable append latency", registry=r)
        self._modes: set[str] = set()

    def watch_store(self, store: object) -> None:
        """Export the store's own counters (transactions = fsyncs, entries) when it keeps them."""
        if isinstance(store, CommitCounts):
            self.registry.register(_StoreCollector(store))

    def mode(self, mode: str) -> str:
        """A bounded label value: at most MAX_MODE_LABELS distinct modes, then one overflow bucket."""
        if mode in self._modes:
            return mode
        if len(self._modes) >= MAX_MODE_LABELS:
            return OVERFLOW
        self._modes.add(mode)
        return mode


class _StoreCollector(Collector):
    def __init__(self, store: CommitCounts) -> None:
        self._store = store

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "macp_storage_commits",
            "Storage transactions committed (one fsync each)",
            value=self._store.commits,
        )
        yield CounterMetricFamily(
            "macp_storage_entries", "History entries appended", value=self._store.appended_entries
        )
        yield CounterMetricFamily(
            "macp_storage_inline_commits",
            "Of the storage transactions, those committed on the event loop's thread",
            value=self._store.inline_commits,
        )
