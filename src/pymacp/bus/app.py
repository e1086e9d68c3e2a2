"""The bus process: start the pools, serve clients, shut down cleanly and promptly.

Shutdown, in order:

1. *Why*: stdin EOF (``--stdio``), or SIGTERM / SIGINT in any mode. The kernel never exits
   on stdin EOF; this bus does, which makes the stdiobus SDK's ``stop()`` fast.
2. *Drain* (stdin EOF only): requests already forwarded get up to ``drain_timeout_sec`` to be
   answered, so ``pymacp bus < requests.ndjson`` prints every reply. A signal skips this.
3. *Stop the workers*: close their stdin (a worker that exits on EOF has then written all
   its output, notifications included), SIGTERM the process groups of those still running
   half a second later, SIGKILL whoever still runs after ``drain_timeout_sec``. Their last
   output is still routed.
   Requests still pending get an error reply (unless strict parity).
4. *Flush* what is queued for clients, and exit 0.

A second signal during shutdown SIGKILLs the workers at once. Whatever happens, the workers
are killed before the process exits (and PDEATHSIG covers a SIGKILL of the bus itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from .config import BusConfig
from .router import Router
from .transport import SocketServer, Stdio

log = logging.getLogger("pymacp.bus")

FLUSH_S = 5.0  # at most this long to write out what is queued for clients at exit


@dataclass(frozen=True, slots=True)
class Listen:
    """Where clients come from: ``stdio``, ``tcp`` (host, port) or ``unix`` (path)."""

    mode: str = "stdio"
    host: str = ""
    port: int = 0
    path: str = ""


async def run_bus(config: BusConfig, listen: Listen, *, strict: bool = False) -> int:
    """Run the bus until stdin EOF (stdio) or a signal; returns the exit code."""
    limits = config.limits
    router = Router(config, strict=strict)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            log.warning("second %s: killing the workers now", signal.Signals(signum).name)
            router.kill()
            return
        log.info("%s: shutting down", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await router.start()
        sockets: SocketServer | None = None
        stdio: Stdio | None = None
        if listen.mode == "stdio":
            stdio = Stdio(router)
            await stdio.start()
            log.info("pymacp bus ready on stdio (pid %d, %s)", os.getpid(), _describe(config))
            await _first(stdio.ended.wait(), stopping.wait())
            if not stopping.is_set() and router.pending:
                await _first(router.drain(limits.drain_timeout_sec), stopping.wait())
        else:
            sockets = SocketServer(router)
            if listen.mode == "tcp":
                address = await sockets.listen_tcp(listen.host, listen.port)
            else:
                address = await sockets.listen_unix(listen.path)
            log.info("pymacp bus listening on %s (pid %d, %s)", address, os.getpid(), _describe(config))
            await stopping.wait()
        await router.stop(limits.drain_timeout_sec)
        if stdio is not None:
            await stdio.close(FLUSH_S)
        if sockets is not None:
            await sockets.close(FLUSH_S)
            if listen.mode == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(listen.path)
    finally:
        router.kill()  # no-op after a clean stop; the last word if anything above failed
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("pymacp bus stopped")
    return 0


def _describe(config: BusConfig) -> str:
    return ", ".join(f"pool {p.id!r} x{p.instances}" for p in config.pools)


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until one of ``waits`` is done, then cancel the others."""
    futures = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()
