"""pymacp: a MACP runtime, observer console and agent bus.

Public API:

- :mod:`pymacp.kernel` — the sans-IO protocol kernel;
- :class:`RuntimeServer` — a runtime (storage, core, gRPC server) to run or embed;
- :class:`Settings` — runtime configuration, read from the ``MACP_*`` environment.

The runtime classes are imported lazily, so using only the kernel does not load gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["RuntimeServer", "Settings", "__version__"]

if TYPE_CHECKING:
    from .runtime.config import Settings
    from .server.app import RuntimeServer


def __getattr__(name: str) -> Any:
    if name == "RuntimeServer":
        from .server.app import RuntimeServer

        return RuntimeServer
    if name == "Settings":
        from .runtime.config import Settings

        return Settings
    raise AttributeError(f"module 'pymacp' has no attribute {name!r}")
