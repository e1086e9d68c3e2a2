"""Routing NDJSON between clients and worker pools, with the kernel's rules.

Client → worker, for each line (see :mod:`.jsonrpc` for which fields count):

1. Not a JSON object → the ``-32700`` parse-error reply; the connection goes on.
2. A ``sessionId`` bound to a live worker → that worker, whatever ``pool`` says.
3. Otherwise the pool named by ``pool``, or the only pool; with several pools and no
   ``pool`` field the message cannot be routed. The pool picks a worker round robin and a
   new ``sessionId`` is bound to it, with the sending client as the session's *owner*.
4. A request (``id`` and ``method``) is remembered as pending: (worker, id) → client.
5. The line is forwarded unchanged.

Worker → client: a response whose id is pending on that worker goes to the client that
sent the request; else a message whose ``sessionId`` is a known session goes to the
session's owner (notifications, worker-initiated requests); else it is dropped. A worker
line that is not a JSON object is a protocol violation: the worker is killed and restarted.

Where this differs from the kernel (``strict=False``, the default): a request that cannot
be routed (unknown pool, several pools and no ``pool``, no live worker) or whose worker
exits before answering gets a JSON-RPC error reply at once, instead of silence and a client
timeout. ``strict=True`` restores the kernel's silence. Pending requests are keyed by
(worker, id) rather than by id alone, so two clients using the same id no longer receive
each other's responses; when they even share the worker, responses go out first come
first served.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import BusConfig, Limits
from .flow import Inbox, Outbox, forward
from .framing import LineSplitter, Oversize
from .jsonrpc import (
    INVALID_ARGUMENT,
    INVALID_REQUEST,
    PARSE_ERROR,
    TRANSPORT_ERROR,
    UNAVAILABLE,
    Routing,
    error_line,
    id_from_head,
    routing_of,
)
from .pool import Pool, WorkerEvent
from .worker import Worker

log = logging.getLogger("pymacp.bus")


class Client:
    """One client connection as the router sees it; a transport creates and feeds it."""

    def __init__(self, name: str, limits: Limits, close: Callable[[], None]) -> None:
        self.name = name
        self.outbox = Outbox(limits.max_output_queue, limits.backpressure_timeout_sec, self._stuck)
        self.inbox = Inbox()
        self.splitter = LineSplitter(limits.max_input_buffer)
        self.close = close
        self.pending = 0  # its requests not answered yet
        self.ended = False  # it sent EOF: close once its pending requests are answered

    def settle(self, count: int) -> None:
        self.pending -= count
        if self.ended and self.pending == 0:
            self.close()

    def _stuck(self) -> None:
        log.error("%s has not read its output for too long; closing it", self.name)
        self.close()


@dataclass(frozen=True, slots=True)
class _Pending:
    client: Client
    id: Any  # as the client sent it, for the error reply


@dataclass(frozen=True, slots=True)
class _Session:
    pool: Pool
    owner: Client


class Unroutable(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Router:
    def __init__(self, config: BusConfig, *, strict: bool = False) -> None:
        self.limits = config.limits
        self.strict = strict
        self.pools = {
            p.id: Pool(p, config.limits, on_line=self.from_worker, on_event=self.worker_event)
            for p in config.pools
        }
        self._pending: dict[Worker, dict[str, deque[_Pending]]] = {}
        self._pending_count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._sessions: dict[str, _Session] = {}

    @property
    def pending(self) -> int:
        """Requests forwarded to a worker and not answered yet."""
        return self._pending_count

    async def start(self) -> None:
        await asyncio.gather(*(pool.start() for pool in self.pools.values()))

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every pending request to be answered."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float) -> None:
        """Stop every pool (see :meth:`Pool.stop`); requests still pending get an error."""
        await asyncio.gather(*(pool.stop(timeout) for pool in self.pools.values()))
        for worker in list(self._pending):
            self._fail_pending(worker, "the bus is shutting down")

    def kill(self) -> None:
        for pool in self.pools.values():
            pool.kill()

    # client → worker

    def from_client(self, client: Client, item: bytes | Oversize) -> None:
        if isinstance(item, Oversize):
            self._oversize(client, item)
            return
        routing = routing_of(item)
        if routing is None:
            log.warning("%s sent a line that is not a JSON object; replied -32700", client.name)
            client.outbox.write(PARSE_ERROR)
            return
        try:
            pool, worker, bound_now = self._choose(routing)
        except Unroutable as problem:
            self._unroutable(client, routing, problem)
            return
        if bound_now and routing.session_id is not None:
            self._sessions[routing.session_id] = _Session(pool, client)  # the sender owns a new session
        if routing.is_request:
            self._remember(worker, routing, client)
        forward(item, client.inbox, worker.outbox)

    def _choose(self, routing: Routing) -> tuple[Pool, Worker, bool]:
        """The pool and worker for a message, and whether its session was bound just now."""
        session = routing.session_id
        if session is not None:
            known = self._sessions.get(session)
            if known is not None:
                worker = known.pool.session_worker(session)
                if worker is not None:
                    return known.pool, worker, False
        pool = self._pool_for(routing)
        worker = pool.pick(session)
        if worker is None:
            why = "restart limit reached" if pool.failed else "its workers are restarting"
            raise Unroutable(UNAVAILABLE, f"pool {pool.id!r} has no live worker ({why})")
        return pool, worker, True

    def _pool_for(self, routing: Routing) -> Pool:
        if routing.pool is not None:
            pool = self.pools.get(routing.pool)
            if pool is None:
                raise Unroutable(INVALID_ARGUMENT, f"unknown pool {routing.pool!r}; pools: {self._names()}")
            return pool
        if len(self.pools) == 1:
            return next(iter(self.pools.values()))
        raise Unroutable(
            INVALID_ARGUMENT, f'this bus has several pools ({self._names()}): add a top-level "pool" field'
        )

    def _names(self) -> str:
        return ", ".join(self.pools)

    def _unroutable(self, client: Client, routing: Routing, problem: Unroutable) -> None:
        what = f"request id={routing.id_key}" if routing.is_request else f"message method={routing.method}"
        log.warning("%s: %s dropped: %s", client.name, what, problem)
        if routing.is_request and not self.strict:
            client.outbox.write(error_line(routing.id, problem.code, str(problem)))

    def _oversize(self, client: Client, item: Oversize) -> None:
        request_id = id_from_head(item.head)
        limit = self.limits.max_input_buffer
        log.warning("%s sent a line of %d bytes, over max_input_buffer=%d", client.name, item.size, limit)
        message = f"Message too large: {item.size} bytes, over the {limit}-byte max_input_buffer"
        client.outbox.write(error_line(request_id, INVALID_REQUEST, message))

    def _remember(self, worker: Worker, routing: Routing, client: Client) -> None:
        assert routing.id_key is not None
        by_id = self._pending.setdefault(worker, {})
        by_id.setdefault(routing.id_key, deque()).append(_Pending(client, routing.id))
        client.pending += 1
        self._pending_count += 1
        self._idle.clear()

    # worker → client

    def from_worker(self, worker: Worker, line: bytes) -> None:
        routing = routing_of(line)
        if routing is None:
            log.error("worker %s wrote a line that is not a JSON object; restarting it", worker.name)
            worker.kill()
            return
        if routing.is_response and routing.id_key is not None:
            pending = self._answered(worker, routing.id_key)
            if pending is not None:
                forward(line, worker.inbox, pending.client.outbox)
                pending.client.settle(1)  # after the write: settling may close an ended client
                return
        if routing.session_id is not None:
            session = self._sessions.get(routing.session_id)
            if session is not None:
                forward(line, worker.inbox, session.owner.outbox)
                return
        log.warning(
            "worker %s: dropped a message (id=%s, method=%s, sessionId=%s): no such pending id or session",
            worker.name,
            routing.id_key,
            routing.method,
            routing.session_id,
        )

    def _answered(self, worker: Worker, id_key: str) -> _Pending | None:
        by_id = self._pending.get(worker)
        waiting = by_id.get(id_key) if by_id is not None else None
        if not waiting or by_id is None:
            return None
        pending = waiting.popleft()
        if not waiting:
            del by_id[id_key]
        self._count_answered(1)
        return pending

    def _count_answered(self, count: int) -> None:
        self._pending_count -= count
        if self._pending_count == 0:
            self._idle.set()

    # lifecycle events

    def worker_event(self, event: WorkerEvent) -> None:
        if event.kind != "exited" or event.worker is None:
            return
        code = event.returncode
        self._fail_pending(event.worker, f"worker {event.worker.name} exited (code {code}) before answering")
        for session in event.sessions:
            known = self._sessions.get(session)
            if known is not None and known.pool.session_worker(session) is None:
                del self._sessions[session]

    def _fail_pending(self, worker: Worker, reason: str) -> None:
        by_id = self._pending.pop(worker, {})
        lost = [pending for waiting in by_id.values() for pending in waiting]
        if not lost:
            return
        self._count_answered(len(lost))
        log.warning("%d pending request(s) on worker %s invalidated: %s", len(lost), worker.name, reason)
        for pending in lost:
            if not self.strict:
                pending.client.outbox.write(error_line(pending.id, TRANSPORT_ERROR, reason))
            pending.client.settle(1)

    def client_gone(self, client: Client) -> None:
        """Forget what ``client`` owned: its sessions and its pending requests."""
        for session, known in list(self._sessions.items()):
            if known.owner is client:
                del self._sessions[session]
                known.pool.forget(session)
        for by_id in self._pending.values():
            for id_key, waiting in list(by_id.items()):
                kept = deque(p for p in waiting if p.client is not client)
                self._count_answered(len(waiting) - len(kept))
                if kept:
                    by_id[id_key] = kept
                else:
                    del by_id[id_key]
