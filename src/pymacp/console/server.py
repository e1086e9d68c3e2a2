"""ConsoleServer: the console's HTTP server, startable inside any running asyncio loop.

``pymacp console`` runs one on its own; ``pymacp serve --console`` runs one next to the
gRPC runtime in the same loop. uvicorn serves the app on a socket bound here, so a bind
failure is an ordinary ``OSError`` (never ``sys.exit`` from inside a library), port 0
works, and :attr:`bound_address` reports the real port. Signals stay with the host
program: the server never installs handlers of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from .app import create_app
from .backend import Backend
from .service import ConsoleCore
from .settings import ConsoleSettings

log = logging.getLogger("pymacp.console")

# A stream that ignores the stop signal still cannot hold shutdown up longer than this.
GRACEFUL_SHUTDOWN_SECS = 5


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the host program owns SIGINT/SIGTERM


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ConsoleServer:
    """Serve the console for ``settings``. Pass ``core`` to share one already started;
    otherwise the server builds a :class:`ConsoleCore` and starts and stops it."""

    def __init__(self, settings: ConsoleSettings, core: Backend | None = None) -> None:
        self.settings = settings
        self._given_core = core
        self._owned_core: ConsoleCore | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._app: Starlette | None = None

    @property
    def bound_address(self) -> tuple[str, int]:
        if self._socket is None:
            raise RuntimeError("the console server is not started")
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.bound_address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def start(self) -> None:
        """Bind, start the core (if owned), and serve; returns once requests are answered."""
        if self._task is not None:
            raise RuntimeError("the console server is already started")
        self._socket = bind_socket(self.settings.bind_host, self.settings.bind_port)
        try:
            core = self._given_core
            if core is None:
                owned = ConsoleCore(self.settings.core_config())
                try:
                    await owned.start()
                except BaseException:
                    with contextlib.suppress(Exception):  # the start-up error is the one to report
                        await owned.aclose()
                    raise
                self._owned_core = core = owned
            self._app = create_app(core, self.settings)
            config = uvicorn.Config(
                self._app,
                lifespan="off",
                log_config=None,
                access_log=False,
                proxy_headers=False,
                server_header=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECS,
            )
            self._server = _EmbeddedServer(config)
            self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # re-raise why it stopped
                    raise RuntimeError("the console's HTTP server stopped during start-up")
                await asyncio.sleep(0.01)
        except BaseException:
            await self._release()
            raise
        log.info("console listening on %s (runtime %s)", self.url, self.settings.runtime)

    async def stop(self) -> None:
        """End open streams, stop serving, then stop the core if this server started it."""
        if self._app is not None:
            self._app.state.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._release()

    async def wait(self) -> None:
        """Until the server stops (for a foreground ``pymacp console``)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _release(self) -> None:
        self._task = None
        self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._owned_core is not None:
            core, self._owned_core = self._owned_core, None
            await core.aclose()
