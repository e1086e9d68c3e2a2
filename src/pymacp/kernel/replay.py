"""Rebuild a session from its history.

Every entry is decided again, with the clock it was accepted at and the bindings its
SessionStart recorded; each must be accepted and must reproduce itself exactly. Because
the kernel is deterministic, the result equals the session the live runtime held.
"""

from __future__ import annotations

from collections.abc import Iterable

from .decisions import Accepted, Rejected
from .engine import Kernel
from .session import HistoryEntry, Session


class ReplayError(Exception):
    """History does not replay: it was not produced by this kernel, or it was altered."""

    def __init__(self, entry: HistoryEntry, reason: str) -> None:
        super().__init__(
            f"history entry {entry.index} ({entry.envelope.message_type} "
            f"{entry.envelope.message_id!r}) does not replay: {reason}"
        )
        self.entry = entry


def replay(entries: Iterable[HistoryEntry], kernel: Kernel | None = None) -> Session | None:
    """The session that ``entries`` (in order, from index 0) describe; None for no entries."""
    kernel = kernel or Kernel()
    session: Session | None = None
    for entry in entries:
        session = replay_entry(kernel, session, entry)
    return session


def replay_entry(kernel: Kernel, session: Session | None, entry: HistoryEntry) -> Session:
    decision = kernel.apply_entry(session, entry)
    if isinstance(decision, Rejected):
        raise ReplayError(entry, f"{decision.rejection.code}: {decision.rejection.message}")
    if not isinstance(decision, Accepted):
        raise ReplayError(entry, f"decided as {type(decision).__name__}, not Accepted")
    if decision.entries != (entry,):
        raise ReplayError(entry, "the entry the kernel derives differs from the recorded one")
    return decision.session
