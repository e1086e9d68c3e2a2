"""ConsoleServer: the console's HTTP server, startable inside any running asyncio loop.

``pymacp console`` runs one on its own; ``pymacp serve --console`` runs one next to the
gRPC runtime in the same loop. uvicorn serves the app on a socket bound here, so a bind
failure is an ordinary ``OSError`` (never ``sys.exit`` from inside a library), port 0
works, and :attr:`bound_address` reports the real port. Signals stay with the host
program: the server never installs handlers of its own.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette

from .app import create_app
from .backend import Backend
from .http_server import HttpServer, bind
from .service import ConsoleCore
from .settings import ConsoleSettings

log = logging.getLogger("pymacp.console")


class ConsoleServer:
    """Serve the console for ``settings``. Pass ``core`` to share one already started;
    otherwise the server builds a :class:`ConsoleCore` and starts and stops it."""

    def __init__(self, settings: ConsoleSettings, core: Backend | None = None) -> None:
        self.settings = settings
        self._given_core = core
        self._owned_core: ConsoleCore | None = None
        self._http: HttpServer | None = None
        self._app: Starlette | None = None

    @property
    def bound_address(self) -> tuple[str, int]:
        if self._http is None:
            raise RuntimeError("the console server is not started")
        return self._http.address

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the console server is not started")
        return self._http.url

    async def start(self) -> None:
        """Bind, start the core (if owned), and serve; returns once requests are answered."""
        if self._http is not None:
            raise RuntimeError("the console server is already started")
        self._http = HttpServer(bind(self.settings.bind_host, self.settings.bind_port))
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
            await self._http.start(self._app)
        except BaseException:
            await self._release()
            raise
        log.info("console listening on %s (runtime %s)", self.url, self.settings.runtime)

    async def stop(self) -> None:
        """End open streams, stop serving, then stop the core if this server started it."""
        if self._app is not None:
            self._app.state.stopping.set()
        await self._release()

    async def wait(self) -> None:
        """Until the server stops (for a foreground ``pymacp console``)."""
        if self._http is not None:
            await self._http.wait()

    async def _release(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.stop()
        if self._owned_core is not None:
            core, self._owned_core = self._owned_core, None
            await core.aclose()
