"""``pymacp bus``: a drop-in for the stdio_bus kernel, and a toolkit for worker pools.

The bus routes newline-delimited JSON-RPC between clients (its stdin/stdout, or TCP and unix
socket connections) and pools of worker processes that speak JSON-RPC on their stdin/stdout,
with the kernel's command line, config file and routing rules. Modules, bottom up:

- :mod:`.config` -- the kernel's config file (pools, limits) and its validation;
- :mod:`.framing` -- NDJSON line splitting with a maximum line length;
- :mod:`.jsonrpc` -- the routing fields of a line, and the bus's own error replies;
- :mod:`.flow` -- bounded output queues and per-pair backpressure;
- :mod:`.worker` -- one worker process (:class:`Worker`);
- :mod:`.pool` -- supervised instances, round robin, session affinity (:class:`Pool`);
- :mod:`.router` -- client ↔ worker routing, pending requests, error replies;
- :mod:`.transport` -- stdio, TCP and unix socket clients;
- :mod:`.app` -- the process: start-up, signals, drain and shutdown; :mod:`.cli` -- flags;
- :mod:`.examples.echo_worker` -- an echo worker for tests, benchmarks and docs.

Reusable API (for programs that drive workers themselves, e.g. a bridge)::

    from pymacp.bus import Pool, PoolConfig, Limits, WorkerEvent, Worker, load_config

:class:`Pool` starts and supervises a pool from a :class:`PoolConfig`, picks a worker by
session affinity or round robin (:meth:`Pool.pick` / :meth:`Pool.send`), delivers every
worker line to an ``on_line(worker, line)`` callback and reports starts, exits (with the
sessions that were bound) and restart-limit failures as :class:`WorkerEvent`. :class:`Worker`
is one process with the same callbacks. Both are documented in their modules.

The names are imported lazily, so running the example worker does not load asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BusConfig",
    "Limits",
    "Pool",
    "PoolConfig",
    "Worker",
    "WorkerEvent",
    "load_config",
    "parse_config",
]

if TYPE_CHECKING:
    from .config import BusConfig, Limits, PoolConfig, load_config, parse_config
    from .pool import Pool, WorkerEvent
    from .worker import Worker

_HOMES = {
    "BusConfig": "config",
    "Limits": "config",
    "PoolConfig": "config",
    "load_config": "config",
    "parse_config": "config",
    "Pool": "pool",
    "WorkerEvent": "pool",
    "Worker": "worker",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'pymacp.bus' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
