"""History entries as storable values, and the checks every append must pass.

A row holds what a :class:`~pymacp.kernel.HistoryEntry` holds, in forms any store can keep
without a schema of its own: the envelope as its protobuf bytes (compact, and exactly what
the client sent), the SessionStart binding as compact JSON text (``None`` on every other
entry), and the kind, ordinal, index and acceptance time as integers.

:func:`check_append` holds the rules both stores apply before writing anything, so that
the memory store and the SQLite store refuse exactly the same appends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

from google.protobuf.message import DecodeError

from ..kernel import EntryKind, Envelope, HistoryEntry, StartBinding
from .base import StorageError


class Row(NamedTuple):
    idx: int
    ordinal: int
    kind: int
    accepted_at_ms: int
    envelope: bytes
    binding: str | None


def to_row(entry: HistoryEntry) -> Row:
    binding = None
    if entry.binding is not None:
        binding = json.dumps(entry.binding.to_json(), sort_keys=True, separators=(",", ":"))
    return Row(
        entry.index,
        entry.ordinal,
        int(entry.kind),
        entry.accepted_at_ms,
        entry.envelope.to_bytes(),
        binding,
    )


def from_row(session_id: str, row: Sequence[object]) -> HistoryEntry:
    """Rebuild an entry; a row that does not decode raises StorageError naming it."""
    index, ordinal, kind, accepted_at_ms, envelope, binding = row
    try:
        if not isinstance(envelope, bytes):
            raise TypeError(f"the envelope column holds {type(envelope).__name__}, not bytes")
        return HistoryEntry(
            index=_integer(index),
            ordinal=_integer(ordinal),
            kind=EntryKind(_integer(kind)),
            envelope=Envelope.from_bytes(envelope),
            accepted_at_ms=_integer(accepted_at_ms),
            binding=None if binding is None else StartBinding.from_json(json.loads(str(binding))),
        )
    except (DecodeError, KeyError, TypeError, ValueError) as exc:
        raise StorageError(
            f"stored entry {index!r} of session {session_id!r} is damaged and cannot be read: {exc}"
        ) from exc


def _integer(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer column, found {value!r}")
    return value


def check_append(session_id: str, entries: Sequence[HistoryEntry]) -> None:
    """Refuse an append that could not have come from the kernel.

    Indexes must be consecutive within the call, streamable entries carry a positive
    ordinal and internal ones ordinal 0. Whether the first index continues the stored log
    is checked by the store itself, where the log is.
    """
    if not session_id:
        raise StorageError("cannot append to a session with an empty session id")
    first = entries[0].index
    if first < 0:
        raise StorageError(f"session {session_id!r}: history indexes start at 0, got {first}")
    for offset, entry in enumerate(entries):
        if entry.index != first + offset:
            raise StorageError(
                f"session {session_id!r}: entries of one append must have consecutive indexes; "
                f"expected {first + offset}, got {entry.index}"
            )
        if entry.streamable and entry.ordinal < 1:
            raise StorageError(
                f"session {session_id!r}: entry {entry.index} is {entry.kind.name} and needs an ordinal "
                f">= 1, got {entry.ordinal}"
            )
        if not entry.streamable and entry.ordinal != 0:
            raise StorageError(
                f"session {session_id!r}: entry {entry.index} is INTERNAL and must have ordinal 0, "
                f"got {entry.ordinal}"
            )


def continuation_error(session_id: str, stored: int, first: int) -> StorageError:
    """The error for an append whose first index does not continue a log of ``stored`` entries."""
    if first < stored:
        return StorageError(
            f"session {session_id!r} already has an entry at index {first}; its log holds {stored} "
            f"entries, so the next append must start at index {stored}"
        )
    return StorageError(
        f"session {session_id!r}: an append starting at index {first} would leave a gap; its log "
        f"holds {stored} entries, so the next append must start at index {stored}"
    )


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")
