"""The authenticated caller, as the runtime's auth layer established it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling. The envelope ``sender`` is always derived from ``sender`` here."""

    sender: str
    can_start_sessions: bool = True
    allowed_modes: frozenset[str] | None = None  # None: every mode ("" stands for ambient traffic)
    is_observer: bool = False
    can_manage_mode_registry: bool = False
    max_open_sessions: int | None = None

    def allows_mode(self, mode: str) -> bool:
        return self.allowed_modes is None or mode in self.allowed_modes
