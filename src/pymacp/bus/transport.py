"""Clients of the bus: its own stdin/stdout (``--stdio``), or TCP / unix socket connections.

Every transport does the same three things: split the bytes it reads into lines
(:class:`~.framing.LineSplitter`), hand each to :meth:`Router.from_client`, and give the
router an outbox to write replies to. Reading is paused while the router holds the client
(see :mod:`.flow`).

stdio: stdin and stdout are driven by the event loop when they are pipes or sockets, the
way the stdiobus SDK starts the bus. When they are terminals or regular files (``pymacp bus
< requests.ndjson``), which the event loop cannot watch, stdin is read by a daemon thread and
stdout is written with blocking writes; this also leaves a terminal's flags untouched.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, cast

from .flow import Sink
from .router import Client, Router

log = logging.getLogger("pymacp.bus")

READ_SIZE = 1 << 16


def _watchable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _raw(fd: int, mode: str) -> Any:
    """An unbuffered file object for ``fd`` that leaves the descriptor open when dropped."""
    return open(fd, mode, buffering=0, closefd=False)  # the transport owns it


def _route(router: Router, client: Client, data: bytes) -> None:
    for item in client.splitter.feed(data):
        router.from_client(client, item)


class Stdio:
    """The bus's stdin and stdout as one client; :attr:`ended` is set at stdin EOF or when
    stdout is gone."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.ended = asyncio.Event()
        self.client = Client("stdio", router.limits, self.ended.set)
        self._stdout: asyncio.WriteTransport | None = None
        self._stdout_closed = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if _watchable(1):
            stdout, _ = await loop.connect_write_pipe(lambda: _StdoutProtocol(self), _raw(1, "wb"))
            self._stdout = stdout
            self.client.outbox.attach(stdout)
        else:
            self.client.outbox.attach(_BlockingSink(1))
            self._stdout_closed.set_result(None)
        if _watchable(0):
            stdin, _ = await loop.connect_read_pipe(lambda: _StdinProtocol(self), _raw(0, "rb"))
            self.client.inbox.attach(stdin)
        else:
            reader = _ThreadReader(0, loop, self._data, self._eof)
            self.client.inbox.attach(reader)
            reader.start()

    def _data(self, data: bytes) -> None:
        _route(self.router, self.client, data)

    def _eof(self) -> None:
        for item in self.client.splitter.end():
            self.router.from_client(self.client, item)
        log.info("stdin EOF: draining pending requests, then shutting down")
        self.ended.set()

    def _stdout_lost(self, exc: Exception | None) -> None:
        if not self._stdout_closed.done():
            self._stdout_closed.set_result(None)
        if exc is not None:
            log.warning("stdout closed by the client (%s); shutting down", exc)
        self.ended.set()

    async def close(self, timeout: float) -> None:
        """Write out what is queued for stdout (at most ``timeout`` seconds), then close it."""
        if self._stdout is not None:
            self._stdout.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._stdout_closed), timeout)
        except TimeoutError:
            if self._stdout is not None:
                self._stdout.abort()


class _StdinProtocol(asyncio.Protocol):
    def __init__(self, stdio: Stdio) -> None:
        self.stdio = stdio

    def data_received(self, data: bytes) -> None:
        self.stdio._data(data)

    def eof_received(self) -> bool | None:
        return None  # connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.stdio._eof()


class _StdoutProtocol(asyncio.Protocol):
    def __init__(self, stdio: Stdio) -> None:
        self.stdio = stdio

    def pause_writing(self) -> None:
        self.stdio.client.outbox.pause_writing()

    def resume_writing(self) -> None:
        self.stdio.client.outbox.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stdio.client.outbox.resume_writing()
        self.stdio._stdout_lost(exc)


class _BlockingSink:
    """stdout that the event loop cannot watch (a terminal, a file): plain blocking writes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            log.warning("stdout: %s; output dropped", exc)
            self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


class _ThreadReader:
    """stdin that the event loop cannot watch: read by a daemon thread (which never delays exit)."""

    def __init__(
        self, fd: int, loop: asyncio.AbstractEventLoop, data: Callable[[bytes], None], eof: Callable[[], None]
    ) -> None:
        self.fd = fd
        self.loop = loop
        self.data = data
        self.eof = eof
        self._running = threading.Event()
        self._running.set()

    def start(self) -> None:
        threading.Thread(target=self._run, name="bus-stdin", daemon=True).start()

    def pause_reading(self) -> None:
        self._running.clear()

    def resume_reading(self) -> None:
        self._running.set()

    def _run(self) -> None:
        while True:
            self._running.wait()
            try:
                chunk = os.read(self.fd, READ_SIZE)
            except OSError:
                chunk = b""
            try:
                if not chunk:
                    self.loop.call_soon_threadsafe(self.eof)
                    return
                self.loop.call_soon_threadsafe(self.data, chunk)
            except RuntimeError:  # the loop is closed: the bus is exiting
                return


class SocketServer:
    """``--tcp HOST:PORT`` or ``--unix PATH``: every connection is a client."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.clients: set[Client] = set()
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._closed: set[asyncio.Future[None]] = set()

    async def listen_tcp(self, host: str, port: int) -> str:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host, port)
        address = self._server.sockets[0].getsockname()
        return f"{address[0]}:{address[1]}" if ":" not in address[0] else f"[{address[0]}]:{address[1]}"

    async def listen_unix(self, path: str) -> str:
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run; any other file is left alone
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._protocol, path)
        return path

    def _protocol(self) -> asyncio.Protocol:
        return _ConnectionProtocol(self, next(self._numbers))

    async def close(self, timeout: float) -> None:
        """Stop accepting; write out what is queued for each client (at most ``timeout``), close them."""
        if self._server is not None:
            self._server.close()
        closing = set(self._closed)
        for client in list(self.clients):
            client.close()
        if closing:
            await asyncio.wait(closing, timeout=timeout)


class _ConnectionProtocol(asyncio.Protocol):
    def __init__(self, server: SocketServer, number: int) -> None:
        self.server = server
        self.number = number
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        client = Client(f"conn={self.number}", self.server.router.limits, self._close)
        client.outbox.attach(cast(Sink, transport))
        client.inbox.attach(self.transport)
        self.client = client
        self.server.clients.add(client)
        self.server._closed.add(self.closed)
        log.info("client conn=%d connected", self.number)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.client is not None:
            _route(self.server.router, self.client, data)

    def eof_received(self) -> bool:
        client = self.client
        if client is None:
            return False
        for item in client.splitter.end():
            self.server.router.from_client(client, item)
        # half-closed: keep writing until its requests are answered, then close
        client.ended = True
        return client.pending > 0

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.outbox.pause_writing()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.outbox.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        if client is not None:
            client.outbox.resume_writing()
            self.server.clients.discard(client)
            self.server.router.client_gone(client)
            log.info("client %s disconnected", client.name)
        self.server._closed.discard(self.closed)
        if not self.closed.done():
            self.closed.set_result(None)
