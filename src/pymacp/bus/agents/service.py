"""The ``pymacp agents`` service: pools, bridges, the dispatcher and the HTTP API, wired.

Start-up order: bind the HTTP port (a taken port fails before any worker runs), open one
runtime client per identity (the dispatcher's, and one per pool with that pool's token),
start the pools, start the two watch streams (WatchSessions feeds the bridges and the
dispatcher, WatchSignals brings the bridges other participants' Progress), then serve HTTP.
Shutdown reverses it: stop answering, cancel the tasks that are still queued or running
(their sessions too) and give their callbacks a grace period, stop watching, stop the
workers, close the clients.

Workers are forked while gRPC runs, which gRPC's fork handlers do not survive (a child can
abort before it execs); ``pymacp agents`` therefore sets ``GRPC_ENABLE_FORK_SUPPORT=0``
before gRPC starts, and a program that embeds :class:`AgentsService` must do the same.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pymacp.console.auth import ApiKeys

from ...console.http_server import HttpServer, bind
from .api import create_app
from .bridge import Bridge
from .callbacks import CallbackSender
from .client import AgentClient
from .config import AgentsConfig
from .dispatch import Dispatcher
from .watch import ProgressWatch, SessionWatch

log = logging.getLogger("pymacp.agents")

STOP_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    runtime: str = "127.0.0.1:50051"
    bind_host: str = "127.0.0.1"
    bind_port: int = 8090
    runtime_tls: bool = False
    runtime_ca: str | None = None
    api_keys: tuple[str, ...] = ()


class AgentsService:
    def __init__(self, config: AgentsConfig, settings: ServiceSettings) -> None:
        self.config = config
        self.settings = settings
        self._clients: list[AgentClient] = []
        self._bridges: dict[str, Bridge] = {}
        self._dispatcher: Dispatcher | None = None
        self._watches: list[SessionWatch | ProgressWatch] = []
        self._http: HttpServer | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the service is not started")
        return self._http.url

    def _client(self, token: str) -> AgentClient:
        client = AgentClient(
            self.settings.runtime, token, tls=self.settings.runtime_tls, root_cert=self.settings.runtime_ca
        )
        self._clients.append(client)
        return client

    def runtime_ready(self) -> bool:
        return all(client.ready for client in self._clients)

    async def start(self) -> None:
        self._http = HttpServer(bind(self.settings.bind_host, self.settings.bind_port))
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        assert self._http is not None
        dispatcher_client = self._client(self.config.dispatcher_token)
        for pool in self.config.pools:
            self._bridges[pool.id] = Bridge(pool, self._client(pool.token), self.config.limits)
        for client in self._clients:
            await client.start()
        dispatcher = Dispatcher(dispatcher_client, self._bridges, CallbackSender(self.config.callbacks))
        self._dispatcher = dispatcher
        bridges = list(self._bridges.values())
        for bridge in bridges:
            bridge.on_lost = dispatcher.worker_lost
            bridge.on_progress = dispatcher.progress
            await bridge.start()
        self._watches = [
            SessionWatch(
                dispatcher_client, [dispatcher.session_changed, *(b.session_changed for b in bridges)]
            ),
            ProgressWatch(dispatcher_client, [b.progress for b in bridges]),
        ]
        for watch in self._watches:
            watch.start()
        app = create_app(dispatcher, ApiKeys(self.settings.api_keys), self.runtime_ready)
        stopping: asyncio.Event = app.state.stopping
        self._stopping = stopping
        await self._http.start(app)
        if not self.config.callbacks.secret:
            log.warning("no callback signing secret is set: dispatches with a callback will be refused")

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # ends the open event streams
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self._dispatcher is not None:
            await self._dispatcher.stop(STOP_GRACE_S)
            self._dispatcher = None
        for watch in self._watches:
            await watch.stop()
        self._watches.clear()
        for bridge in self._bridges.values():
            await bridge.stop()
        self._bridges.clear()
        for client in self._clients:
            await client.aclose()
        self._clients.clear()
