"""A store that keeps everything in process memory (``MACP_MEMORY_ONLY=1``).

Nothing survives the process, so "durable" means "in this dict". It applies the same
checks as the SQLite store (see :func:`.codec.check_append`), so code tested against it
behaves the same on disk. Entries are immutable values and are kept as they are; every
read returns a new list, so callers cannot change what is stored.

Every method runs to completion without awaiting anything, so on one event loop each call
is atomic.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence

from ..kernel import HistoryEntry
from .base import StorageError
from .codec import check_append, check_limit, continuation_error


class MemoryStore:
    def __init__(self) -> None:
        self._histories: dict[str, list[HistoryEntry]] = {}
        self._documents: dict[str, dict[str, str]] = {}
        self._summaries: dict[str, str] = {}
        self._opened = False
        self._closed = False

    async def open(self) -> None:
        if self._closed:
            raise StorageError("the memory store is closed and cannot be reopened")
        self._opened = True

    async def close(self) -> None:
        self._closed = True

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError("the memory store is closed")
        if not self._opened:
            raise StorageError("the memory store is not open; call open() first")

    async def append(
        self, session_id: str, entries: Sequence[HistoryEntry], summary: str | None = None
    ) -> None:
        self._check_usable()
        if entries:
            check_append(session_id, entries)
            history = self._histories.get(session_id, [])
            if entries[0].index != len(history):
                raise continuation_error(session_id, len(history), entries[0].index)
            self._histories[session_id] = history
            history.extend(entries)
        if summary is not None:
            self._summaries[session_id] = summary

    async def read(
        self, session_id: str, start_index: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        self._check_usable()
        check_limit(limit)
        history = self._histories.get(session_id, [])
        start = max(start_index, 0)
        end = len(history) if limit is None else start + limit
        return history[start:end]

    async def read_streamable(self, session_id: str, after_ordinal: int, limit: int) -> list[HistoryEntry]:
        self._check_usable()
        check_limit(limit)
        history = self._histories.get(session_id, [])
        # An entry's ordinal never exceeds its index + 1, so entries before that index cannot match.
        start = max(0, min(after_ordinal, len(history)) - 1)
        found: list[HistoryEntry] = []
        for entry in itertools.islice(history, start, None):
            if len(found) >= limit:
                break
            if entry.streamable and entry.ordinal > after_ordinal:
                found.append(entry)
        return found

    async def read_stream_bytes(
        self, session_id: str, after_ordinal: int, limit: int
    ) -> list[tuple[int, bytes]]:
        return [
            (e.ordinal, e.envelope.to_bytes())
            for e in await self.read_streamable(session_id, after_ordinal, limit)
        ]

    async def sessions(self) -> AsyncIterator[tuple[str, list[HistoryEntry]]]:
        self._check_usable()
        for session_id in sorted(self._histories):
            history = self._histories.get(session_id)
            if history:  # deleted while the caller was busy with an earlier session
                yield session_id, list(history)

    async def delete_session(self, session_id: str) -> None:
        self._check_usable()
        self._histories.pop(session_id, None)
        self._summaries.pop(session_id, None)

    async def summaries(self) -> AsyncIterator[tuple[str, str]]:
        self._check_usable()
        for session_id in sorted(self._summaries):
            summary = self._summaries.get(session_id)
            if summary is not None:
                yield session_id, summary

    async def unsummarized(self) -> list[str]:
        self._check_usable()
        return sorted(sid for sid in self._histories if sid not in self._summaries)

    async def put_document(self, registry: str, key: str, document: str) -> None:
        self._check_usable()
        self._documents.setdefault(registry, {})[key] = document

    async def delete_document(self, registry: str, key: str) -> None:
        self._check_usable()
        documents = self._documents.get(registry)
        if documents is not None:
            documents.pop(key, None)

    async def documents(self, registry: str) -> Mapping[str, str]:
        self._check_usable()
        return dict(self._documents.get(registry, {}))
