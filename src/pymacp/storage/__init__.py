"""Append-only storage for session histories and registries (see :mod:`.base`)."""

from .base import EXTENSION_MODES, POLICIES, CommitCounts, StorageError, Store
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = [
    "EXTENSION_MODES",
    "POLICIES",
    "CommitCounts",
    "MemoryStore",
    "SqliteStore",
    "StorageError",
    "Store",
]
