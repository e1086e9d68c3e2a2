"""A pool of identical workers: supervision, round robin and session affinity.

Reusable from any asyncio program (the bus's router is one user)::

    pool = Pool(PoolConfig("echo", "python3", ("-m", "pymacp.bus.examples.echo_worker"), 2),
                on_line=handle_line, on_event=handle_event)
    await pool.start()
    worker = pool.send(b'{"jsonrpc":"2.0","id":1,"method":"ping","sessionId":"s1"}', session_id="s1")
    ...
    await pool.stop()

- ``on_line(worker, line)`` receives every stdout line of every worker (see :mod:`.worker`).
- ``on_event(event)`` receives a :class:`WorkerEvent` when a worker starts, exits (with the
  sessions that were bound to it and when the slot restarts) or its slot gives up.
- :meth:`Pool.pick` chooses a live worker: the one bound to ``session_id`` if it is alive,
  else the next live slot round robin, binding ``session_id`` to it. A session's binding
  ends when its worker exits; its next message is bound afresh.

Supervision follows the kernel's limits: a slot whose worker exits is restarted, at most
``max_restarts`` times within ``restart_window_sec``, after which the slot has *failed* and
stays down. Unlike the kernel, which logs a backoff but restarts at once, the backoff is
applied: the first restart in a window is immediate, the next ones wait 1, 2, 4, 8, then 16
seconds. An immediate restart is reported (the ``exited`` event) only once the replacement
runs, so a caller that answers the lost requests then finds a live worker. A command that
cannot be executed counts as a worker that exited at once.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Limits, PoolConfig
from .worker import LineHandler, Worker

log = logging.getLogger("pymacp.bus")

MAX_BACKOFF_S = 16.0
EOF_GRACE_S = 0.5  # on stop: how long workers may take to exit on stdin EOF before SIGTERM
KILL_WAIT_S = 5.0  # after SIGKILL: bounds the wait for a group that cannot be reaped


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    kind: str  # "started", "exited" or "failed" (the slot reached its restart limit)
    pool: str
    slot: int
    worker: Worker | None  # None when the command could not be executed
    returncode: int | None = None
    sessions: tuple[str, ...] = ()  # "exited": the sessions that were bound to the worker
    restart_in: float | None = None  # "exited": seconds until the slot restarts; None if it won't


EventHandler = Callable[[WorkerEvent], None]


@dataclass(slots=True)
class _Slot:
    index: int
    worker: Worker | None = None
    restarts: deque[float] = field(default_factory=deque)  # monotonic times within the window
    failed: bool = False
    task: asyncio.Task[None] | None = None


class Pool:
    def __init__(
        self,
        config: PoolConfig,
        limits: Limits | None = None,
        *,
        on_line: LineHandler,
        on_event: EventHandler | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or Limits()
        self._on_line = on_line
        self._on_event = on_event
        self._slots = [_Slot(index) for index in range(config.instances)]
        self._affinity: dict[str, Worker] = {}
        self._cursor = 0
        self._stopping = False

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The live workers, by slot."""
        return tuple(s.worker for s in self._slots if s.worker is not None and s.worker.alive)

    @property
    def failed(self) -> bool:
        """Every slot gave up after too many restarts: nothing will serve this pool again."""
        return all(slot.failed for slot in self._slots)

    async def start(self) -> None:
        """Start every instance; returns once each has been spawned (or failed to)."""
        started = [asyncio.get_running_loop().create_future() for _ in self._slots]
        for slot, ready in zip(self._slots, started, strict=True):
            slot.task = asyncio.create_task(self._supervise(slot, ready), name=f"bus-{self.id}#{slot.index}")
        await asyncio.gather(*started)

    def pick(self, session_id: str | None = None) -> Worker | None:
        """The worker for ``session_id`` (bound now if new), or the next one round robin."""
        if session_id is not None:
            bound = self._affinity.get(session_id)
            if bound is not None and bound.alive:
                return bound
        count = len(self._slots)
        for step in range(count):
            slot = self._slots[(self._cursor + step) % count]
            if slot.worker is not None and slot.worker.alive:
                self._cursor = slot.index + 1
                if session_id is not None:
                    self._affinity[session_id] = slot.worker
                return slot.worker
        if session_id is not None:
            self._affinity.pop(session_id, None)
        return None

    def send(self, line: bytes, session_id: str | None = None) -> Worker | None:
        """Send ``line`` to :meth:`pick`'s choice; the worker it went to, or None if none is live."""
        worker = self.pick(session_id)
        if worker is None or not worker.send(line):
            return None
        return worker

    def session_worker(self, session_id: str) -> Worker | None:
        """The live worker ``session_id`` is bound to, if any."""
        worker = self._affinity.get(session_id)
        return worker if worker is not None and worker.alive else None

    def forget(self, session_id: str) -> None:
        self._affinity.pop(session_id, None)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop restarting and stop every worker: close its stdin, SIGTERM it if it is still running
        after :data:`EOF_GRACE_S`, SIGKILL it if it still is after ``timeout`` seconds in all
        (default: ``drain_timeout_sec``)."""
        self._stopping = True
        wait_s = self.limits.drain_timeout_sec if timeout is None else timeout
        for slot in self._slots:
            if slot.worker is not None and slot.worker.alive:
                slot.worker.close_stdin()
            elif slot.task is not None:
                slot.task.cancel()  # waiting out a backoff, or still spawning (asyncio kills that child)
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        if not tasks:
            return
        # EOF first: a worker that exits on it has written all its output; then SIGTERM
        grace = min(EOF_GRACE_S, wait_s)
        _, late = await asyncio.wait(tasks, timeout=grace)
        if late:
            for slot in self._slots:
                if slot.worker is not None:
                    slot.worker.terminate()
            _, late = await asyncio.wait(late, timeout=wait_s - grace)
        if late:
            names = ", ".join(s.worker.name for s in self._slots if s.worker is not None and s.worker.alive)
            log.warning("workers %s ignored SIGTERM for %gs; killing them", names, wait_s)
            self.kill()
            await asyncio.wait(late, timeout=KILL_WAIT_S)

    def kill(self) -> None:
        """SIGKILL every worker at once (last resort, e.g. the bus is failing)."""
        self._stopping = True
        for slot in self._slots:
            if slot.worker is not None:
                slot.worker.kill()

    # supervision

    async def _supervise(self, slot: _Slot, ready: asyncio.Future[None]) -> None:
        try:
            await self._keep_running(slot, ready)
        finally:
            if not ready.done():  # start() must return even if supervision broke down
                ready.set_result(None)

    async def _keep_running(self, slot: _Slot, ready: asyncio.Future[None]) -> None:
        held: WorkerEvent | None = None  # an exit reported once its replacement runs
        while True:
            worker = await self._spawn(slot)
            if not ready.done():
                ready.set_result(None)
            if held is not None:
                self._emit(held)
                held = None
            if self._stopping and worker is not None:
                worker.terminate()  # stop() came while it was being spawned
            code = await worker.wait() if worker is not None else None
            sessions = tuple(s for s, w in self._affinity.items() if w is worker)
            for session in sessions:
                del self._affinity[session]
            delay = None if self._stopping else self._restart_delay(slot)
            event = WorkerEvent("exited", self.id, slot.index, worker, code, sessions, delay)
            if not self._stopping:
                log.warning(
                    "worker %s#%d exited (%s); %s",
                    self.id,
                    slot.index,
                    "could not start" if worker is None else f"code {code}",
                    "not restarting: restart limit reached" if delay is None else f"restart in {delay:g}s",
                )
            if delay == 0:
                held = event
                continue
            self._emit(event)
            if delay is None:
                if not self._stopping:
                    self._emit(WorkerEvent("failed", self.id, slot.index, None))
                return
            await asyncio.sleep(delay)
            if self._stopping:
                return

    async def _spawn(self, slot: _Slot) -> Worker | None:
        limits = self.limits
        try:
            worker = await Worker.spawn(
                self.id,
                slot.index,
                self.config.command,
                self.config.args,
                on_line=self._on_line,
                max_line=limits.max_input_buffer,
                output_limit=limits.max_output_queue,
                stuck_after_s=limits.backpressure_timeout_sec,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:  # ValueError: a NUL in the command
            log.error("worker %s#%d: cannot execute %r: %s", self.id, slot.index, self.config.command, exc)
            slot.worker = None
            return None
        slot.worker = worker
        log.info("worker %s started (pid %d)", worker.name, worker.pid or -1)
        self._emit(WorkerEvent("started", self.id, slot.index, worker))
        return worker

    def _restart_delay(self, slot: _Slot) -> float | None:
        """Seconds before the slot's next start, or None when its restart limit is reached."""
        now = time.monotonic()
        window = self.limits.restart_window_sec
        while slot.restarts and now - slot.restarts[0] > window:
            slot.restarts.popleft()
        if len(slot.restarts) >= self.limits.max_restarts:
            slot.failed = True
            return None
        attempt = len(slot.restarts)
        slot.restarts.append(now)
        return 0.0 if attempt == 0 else min(2.0 ** (attempt - 1), MAX_BACKOFF_S)

    def _emit(self, event: WorkerEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a handler bug must not stop supervision
            log.exception("handling %s of worker %s#%d failed", event.kind, event.pool, event.slot)
