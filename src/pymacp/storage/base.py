"""The storage interface: an append-only log of history entries, plus the registries.

The log is the only source of truth. Every accepted envelope and every lifecycle record
is a :class:`~pymacp.kernel.HistoryEntry`; a session is whatever replaying its entries
gives. :meth:`Store.append` returns only once the entries are durable, so the runtime can
acknowledge right after it. Concurrent appends from different sessions may share one
transaction and one fsync (group commit); appends of one session never interleave
because the runtime serializes each session.

Registries (governance policies, extension modes) are small key -> JSON documents kept
beside the log, so they survive restarts.

Implementations: :mod:`.memory` (nothing persisted; ``MACP_MEMORY_ONLY=1``) and
:mod:`.sqlite` (embedded SQLite in WAL mode, the default).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from ..kernel import HistoryEntry

POLICIES = "policies"
EXTENSION_MODES = "extension_modes"


class StorageError(Exception):
    """The store could not do what was asked; nothing was half-applied."""


class Store(Protocol):
    async def open(self) -> None:
        """Create or open the store; idempotent."""

    async def close(self) -> None:
        """Flush pending work and release resources; later calls fail with StorageError."""

    async def append(
        self, session_id: str, entries: Sequence[HistoryEntry], summary: str | None = None
    ) -> None:
        """Durably append ``entries`` and, in the same transaction, replace the session's summary.

        ``entries`` must continue the stored log (the first index equals the stored length);
        either may be empty. Raises StorageError, after which nothing of the call is stored.
        """

    async def read(
        self, session_id: str, start_index: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        """Entries with ``index >= start_index`` in index order (at most ``limit``)."""

    async def read_streamable(self, session_id: str, after_ordinal: int, limit: int) -> list[HistoryEntry]:
        """Entries that carry an ordinal greater than ``after_ordinal``, in ordinal order."""

    async def read_stream_bytes(
        self, session_id: str, after_ordinal: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """Like :meth:`read_streamable`, but ``(ordinal, envelope wire bytes)`` as stored, undecoded."""

    def sessions(self) -> AsyncIterator[tuple[str, list[HistoryEntry]]]:
        """Every stored session with its full history, for recovery."""

    def summaries(self) -> AsyncIterator[tuple[str, str]]:
        """Every stored session summary (opaque text the runtime wrote), for a fast start."""

    async def unsummarized(self) -> list[str]:
        """Ids of stored sessions that have entries but no summary (written before summaries existed)."""

    async def delete_session(self, session_id: str) -> None:
        """Remove a session's history and summary (retention)."""

    async def put_document(self, registry: str, key: str, document: str) -> None:
        """Durably store a registry document (JSON text) under ``key``."""

    async def delete_document(self, registry: str, key: str) -> None: ...

    async def documents(self, registry: str) -> Mapping[str, str]:
        """Every document of one registry, by key."""


@runtime_checkable
class CommitCounts(Protocol):
    """The counters a store that commits transactions keeps, exported as metrics by the runtime."""

    @property
    def commits(self) -> int:
        """Write transactions committed (one fsync each when every commit is synced)."""

    @property
    def inline_commits(self) -> int:
        """Of :attr:`commits`, those made on the event loop's own thread."""

    @property
    def appended_entries(self) -> int:
        """History entries durably appended."""
