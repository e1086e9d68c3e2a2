"""Session discovery: every session the runtime knows gets a run, even if nobody POSTed it.

WatchSessions announces sessions (an initial CREATED per known session, then live
transitions); after every (re)connect the console also pages through ListSessions, because
a watch stream is lossy by design -- a lagging subscriber is cut off and must reconcile,
and a runtime may not send the initial sync at all. Both feed the same idempotent handler:
make sure a run exists for the session and hand the metadata to its observer as a hint
(the observer still asks GetSession before trusting a state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from macp.v1 import core_pb2

from .runtime_client import CallError, RuntimeClient

log = logging.getLogger("pymacp.console.discovery")
RETRY_BASE_S = 0.2
RETRY_MAX_S = 5.0
POLL_WITHOUT_WATCH_S = 5.0  # a runtime without WatchSessions is reconciled on this period

SessionHandler = Callable[[core_pb2.SessionMetadata], Awaitable[None]]


class Discovery:
    def __init__(self, client: RuntimeClient, on_session: SessionHandler) -> None:
        self._client = client
        self._on_session = on_session
        self.reconciliations = 0  # completed ListSessions passes (tests and metrics read it)

    async def run(self) -> None:
        delay = RETRY_BASE_S
        while True:
            watch = asyncio.create_task(self._watch(), name="console-watch-sessions")
            try:
                await self._reconcile()
                await watch
                delay = RETRY_BASE_S  # the stream ended cleanly: reconnect at once
            except CallError as error:
                if error.status == "UNIMPLEMENTED":
                    log.warning(
                        "the runtime has no WatchSessions; reconciling every %gs", POLL_WITHOUT_WATCH_S
                    )
                    await asyncio.sleep(POLL_WITHOUT_WATCH_S)
                    continue
                log.info("session discovery interrupted (%s); reconnecting in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                if not watch.done():
                    watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)

    async def _watch(self) -> None:
        async for event in self._client.watch_sessions():
            if event.session.session_id:
                await self._handle(event.session)

    async def _reconcile(self) -> None:
        for metadata in await self._client.list_sessions():
            await self._handle(metadata)
        self.reconciliations += 1

    async def _handle(self, metadata: core_pb2.SessionMetadata) -> None:
        try:
            await self._on_session(metadata)
        except Exception:  # one bad session must not stop discovery of the others
            log.exception("could not track session %s", metadata.session_id)
