"""Append-only storage for session histories and registries (see :mod:`.base`)."""

from .base import EXTENSION_MODES, POLICIES, StorageError, Store
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = ["EXTENSION_MODES", "POLICIES", "MemoryStore", "SqliteStore", "StorageError", "Store"]
