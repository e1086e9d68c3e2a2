"""The MACP bridge: one pool of worker processes acting as one MACP participant.

Theory of operation (the wire format is in :mod:`.methods`):

1. **Adopt.** The service's single WatchSessions stream (:mod:`.watch`) calls
   :meth:`Bridge.session_changed` for every session event. A session that is open and
   declares this pool's participant is adopted: a :class:`~.feed.SessionFeed` follows it
   with the participant's own token, from the first envelope (so a session that started
   before the bridge did is delivered whole).
2. **Deliver.** The first envelope binds the session to a worker (:meth:`Pool.pick`: round
   robin); every envelope of the session then goes to that worker as ``macp/envelope``.
   Progress envelopes are not part of a session's history (the runtime broadcasts them
   with the Signals), so other participants' Progress comes from the service's WatchSignals
   stream (:meth:`Bridge.progress`), in no fixed order relative to the session's envelopes.
3. **Send.** A worker's ``macp/send`` becomes a ``Send`` under the pool's token, and its
   ``agent_message_chunk`` updates become ``Progress`` envelopes. Each worker's requests
   for one session are sent one after the other, in the order the worker wrote them, so a
   TaskAccept written before a TaskUpdate also reaches the runtime first. Every Progress the
   runtime accepts from the pool is also handed to ``on_progress`` before the worker's next
   send for that session goes out: that is how the dispatcher sees a task's chunks in order.
4. **End.** When the watch reports the session terminal, the rest of its history is
   delivered, then ``macp/sessionEnded``.
5. **Lose.** A session dies with its worker: when the worker exits, the bridge waits until
   the sends the worker wrote before exiting are answered, stops following the session
   (no other worker is handed a session in mid-flight) and reports the loss to
   ``on_lost`` -- the dispatcher turns it into an ``error`` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from macp.v1 import core_pb2

from pymacp.kernel.envelope import PROGRESS, Envelope

from ..config import Limits
from ..jsonrpc import id_text
from ..pool import Pool, WorkerEvent
from ..worker import Worker
from . import methods
from .client import AgentClient, CallError
from .config import AgentPool
from .feed import SessionFeed
from .watch import is_terminal, state_name

log = logging.getLogger("pymacp.agents")
INTERNAL_ERROR = -32603  # JSON-RPC 2.0

LostHandler = Callable[[str, str], None]  # (session id, what happened)
ProgressHandler = Callable[[Envelope], None]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Followed:
    session_id: str
    mode: str
    feed: SessionFeed | None = None
    worker: Worker | None = None
    lost: bool = False
    chunks: int = 0


class Bridge:
    def __init__(self, config: AgentPool, client: AgentClient, limits: Limits) -> None:
        self.config = config
        self.participant = config.participant
        self.pool = Pool(config.process, limits, on_line=self._on_line, on_event=self._on_event)
        self.on_lost: LostHandler | None = None
        self.on_progress: ProgressHandler | None = None
        self._client = client
        self._sessions: dict[str, _Followed] = {}
        self._abandoned: set[str] = set()  # lost with their worker; never adopted again
        self._chains: dict[tuple[Worker, str], asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.pool.start()

    async def stop(self) -> None:
        for followed in list(self._sessions.values()):
            if followed.feed is not None:
                await followed.feed.stop()
        self._sessions.clear()
        await self.pool.stop()
        for task in [*self._chains.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._chains.values(), *self._background, return_exceptions=True)

    # ------------------------------------------------------------------ sessions
    def session_changed(self, metadata: core_pb2.SessionMetadata) -> None:
        """A WatchSessions event: adopt, or end, a session of this participant."""
        session_id = metadata.session_id
        if is_terminal(metadata.state):
            self._abandoned.discard(session_id)
            followed = self._sessions.pop(session_id, None)
            if followed is not None:
                self._spawn(self._end(followed, state_name(metadata.state)))
            return
        if session_id in self._sessions or session_id in self._abandoned:
            return
        if self.participant not in metadata.participants:
            return
        followed = _Followed(session_id, metadata.mode)
        name = f"participant {self.participant!r}"
        followed.feed = SessionFeed(self._client, session_id, lambda env: self._deliver(followed, env), name)
        self._sessions[session_id] = followed
        followed.feed.start()
        log.info("pool %s joins session %s (%s)", self.pool.id, session_id, metadata.mode)

    def _deliver(self, followed: _Followed, envelope: Envelope) -> None:
        if followed.lost:
            return
        if followed.worker is None:
            followed.worker = self.pool.pick(followed.session_id)
            if followed.worker is None:
                self._lose(followed, f"pool {self.pool.id!r} has no live worker to take the session")
                return
        if followed.worker.alive:  # else it exited: its exit event reports the loss
            followed.worker.send(methods.envelope_notification(self.participant, envelope))

    def progress(self, envelope: Envelope) -> None:
        """A session-scoped Progress from WatchSignals: to the session's worker, unless it is ours."""
        followed = self._sessions.get(envelope.session_id)
        if envelope.sender == self.participant or followed is None or followed.lost:
            return
        if followed.worker is not None and followed.worker.alive:
            followed.worker.send(methods.envelope_notification(self.participant, envelope))

    async def _end(self, followed: _Followed, state: str) -> None:
        if followed.feed is not None:
            await followed.feed.finish()
        worker = followed.worker
        if worker is not None and worker.alive and not followed.lost:
            worker.send(methods.session_ended_notification(self.participant, followed.session_id, state))
        self.pool.forget(followed.session_id)

    def _lose(self, followed: _Followed, what: str) -> None:
        followed.lost = True
        self._sessions.pop(followed.session_id, None)
        self._abandoned.add(followed.session_id)
        self._spawn(self._report_lost(followed, what))

    async def _report_lost(self, followed: _Followed, what: str) -> None:
        if followed.worker is not None:
            pending = self._chains.get((followed.worker, followed.session_id))
            if pending is not None:  # what the worker sent before it died still counts
                await asyncio.wait([pending])
        if followed.feed is not None:
            await followed.feed.stop()
        log.warning("session %s lost its worker: %s", followed.session_id, what)
        if self.on_lost is not None:
            self.on_lost(followed.session_id, what)

    def _on_event(self, event: WorkerEvent) -> None:
        if event.kind != "exited" or event.worker is None:
            return
        code = event.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        for followed in [f for f in self._sessions.values() if f.worker is event.worker]:
            self._lose(followed, f"worker {event.worker.name} {how}")

    # ------------------------------------------------------------------ worker lines
    def _on_line(self, worker: Worker, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            log.warning("worker %s wrote a line that is not JSON; ignored: %.80r", worker.name, line)
            return
        if not isinstance(message, dict):
            log.warning("worker %s wrote JSON that is not an object; ignored", worker.name)
            return
        method = message.get("method")
        if not isinstance(method, str):
            return  # a response: the bridge never asks workers anything
        routed = message.get("sessionId") if isinstance(message.get("sessionId"), str) else None
        params = message.get("params")
        request_id = message.get("id")
        if id_text(request_id) is not None:
            self._request(worker, request_id, method, params, routed)
        elif method == methods.SESSION_UPDATE:
            self._chunk(worker, params, routed)

    def _request(self, worker: Worker, request_id: Any, method: str, params: Any, routed: str | None) -> None:
        if method != methods.SEND:
            error = methods.RpcError(
                methods.METHOD_NOT_FOUND, f"unknown method {method!r}; the bridge serves {methods.SEND!r}"
            )
            worker.send(methods.error_line(request_id, routed, error))
            return
        session_id = methods.send_session(params, routed)
        self._chain(worker, session_id, lambda: self._send(worker, request_id, params, session_id))

    async def _send(self, worker: Worker, request_id: Any, params: Any, session_id: str) -> None:
        try:
            await self._send_or_refuse(worker, request_id, params, session_id)
        except Exception:  # a bug must not leave the worker waiting for an answer forever
            log.exception("a macp/send of worker %s failed unexpectedly", worker.name)
            failure = methods.RpcError(
                INTERNAL_ERROR, "the bridge failed to handle this macp/send; see its log"
            )
            worker.send(methods.error_line(request_id, session_id, failure))

    async def _send_or_refuse(self, worker: Worker, request_id: Any, params: Any, session_id: str) -> None:
        followed = self._sessions.get(session_id)
        built = methods.envelope_for_send(
            params,
            participant=self.participant,
            session_id=session_id,
            session_mode=followed.mode if followed is not None else None,
            now_ms=now_ms(),
            new_id=lambda: str(uuid.uuid4()),
        )
        if isinstance(built, methods.RpcError):
            worker.send(methods.error_line(request_id, session_id, built))
            return
        try:
            ack = await self._client.send(built)
        except CallError as error:
            worker.send(methods.error_line(request_id, session_id, methods.call_failed(error)))
            return
        if ack.ok:
            self._accepted(built, ack.duplicate)
            worker.send(methods.result_line(request_id, session_id, methods.ack_json(ack)))
        else:
            worker.send(methods.error_line(request_id, session_id, methods.rejection(ack)))

    def _chunk(self, worker: Worker, params: Any, routed: str | None) -> None:
        text = methods.chunk_text(params)
        if text is None:
            return
        session_id = methods.update_session(params, routed)
        followed = self._sessions.get(session_id or "")
        if followed is None or followed.worker is not worker:
            log.warning(
                "worker %s streamed a chunk for a session it does not hold (%r); ignored",
                worker.name,
                session_id,
            )
            return
        followed.chunks += 1
        number = followed.chunks
        self._chain(worker, followed.session_id, lambda: self._progress(followed, text, number))

    async def _progress(self, followed: _Followed, text: str, number: int) -> None:
        envelope = methods.progress_envelope(
            session_id=followed.session_id,
            mode=followed.mode,
            participant=self.participant,
            text=text,
            number=number,
            now_ms=now_ms(),
            message_id=str(uuid.uuid4()),
        )
        try:
            ack = await self._client.send(envelope)
        except CallError as error:
            log.warning("a chunk of session %s was not sent as Progress: %s", followed.session_id, error)
            return
        if not ack.ok:
            log.warning(
                "the runtime refused a Progress of session %s: %s %s",
                followed.session_id,
                ack.error.code,
                ack.error.message,
            )
            return
        self._accepted(envelope, ack.duplicate)

    def _accepted(self, envelope: Envelope, duplicate: bool) -> None:
        if envelope.message_type == PROGRESS and envelope.session_id and not duplicate and self.on_progress:
            self.on_progress(envelope)

    # ------------------------------------------------------------------ ordering
    def _chain(self, worker: Worker, session_id: str, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` after every earlier job of this worker and session has finished."""
        key = (worker, session_id)
        previous = self._chains.get(key)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await job()
            except Exception:
                log.exception("handling a request of worker %s failed", worker.name)

        task = asyncio.create_task(run())
        self._chains[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._chains.get(key) is finished:
                del self._chains[key]

        task.add_done_callback(done)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("pool %s: a background job failed", self.pool.id)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
