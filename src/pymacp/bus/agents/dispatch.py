"""The dispatcher: admits tasks to a pool, runs them under the pool's cap, reports their end.

:meth:`Dispatcher.submit` decides at once whether a task is taken (so ``POST /dispatch``
can answer 202 with the ids, or a clear refusal); a runner per task then waits for a slot
(:mod:`.capacity`), drives the task's session (:mod:`.run`), releases the slot and hands
the completion to the callback sender -- exactly once, from the one place a task ends.

Refusals (:class:`DispatchError`, rendered by the HTTP layer):

- 404 ``POOL_NOT_FOUND`` -- no pool with that id, or no pool acting as that agent;
- 409 ``DISPATCH_DISABLED`` -- the pool's ``cap`` is 0 (bridge only);
- 503 ``POOL_FAILED`` -- every worker of the pool reached its restart limit;
- 503 ``NO_WORKER`` -- no worker of the pool is running right now;
- 429 ``QUEUE_FULL`` -- ``cap`` tasks run and ``queueLimit`` wait already;
- 400 ``CALLBACKS_DISABLED`` -- a callback was asked for, but no signing secret is set;
- 400 ``CALLBACK_HOST_NOT_ALLOWED`` -- the callback's host is not in ``callbacks.allowedHosts``.

Tasks are held in memory (the newest :data:`MAX_TASKS`); their sessions, with the whole
exchange and the outcome, stay in the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from macp.v1 import core_pb2

from pymacp.kernel.envelope import Envelope

from .bridge import Bridge
from .callbacks import CallbackSender
from .capacity import Capacity, QueueFull
from .client import AgentClient, CallError
from .config import AgentPool
from .run import CancelRequest, Ended, Lost, TaskRun, now_ms
from .submission import Submission
from .tasks import CANCELLED, ERROR, QUEUED, Task, TaskSpec
from .watch import is_terminal

log = logging.getLogger("pymacp.agents")

MAX_TASKS = 10_000
CANCEL_WAIT_S = 15.0


class DispatchError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Dispatcher:
    def __init__(
        self,
        client: AgentClient,
        bridges: Mapping[str, Bridge],
        callbacks: CallbackSender,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._client = client
        self._bridges = bridges
        self._callbacks = callbacks
        self._clock = clock
        self._capacity = {pid: Capacity(b.config.cap, b.config.queue_limit) for pid, b in bridges.items()}
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._runs: dict[str, TaskRun] = {}  # by session id
        self._runners: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ admission
    def submit(self, submission: Submission) -> Task:
        pool = self._pool_for(submission)
        if pool.cap == 0:
            raise DispatchError(
                409, "DISPATCH_DISABLED", f"pool {pool.id!r} takes no dispatched tasks (cap 0)"
            )
        workers = self._bridges[pool.id].pool
        if workers.failed:
            raise DispatchError(
                503,
                "POOL_FAILED",
                f"every worker of pool {pool.id!r} exceeded its restart limit; fix its command and "
                "restart pymacp agents",
            )
        if not workers.workers:
            raise DispatchError(
                503, "NO_WORKER", f"no worker of pool {pool.id!r} is running right now; retry shortly", 1
            )
        if submission.callback is not None and not self._callbacks.enabled:
            raise DispatchError(
                400,
                "CALLBACKS_DISABLED",
                "this service has no callback signing secret, so it sends no callbacks; set "
                "PYMACP_AGENTS_CALLBACK_SECRET (or the variable named by callbacks.secretEnv) and restart",
            )
        if submission.callback is not None and not self._callbacks.settings.allows(submission.callback.host):
            raise DispatchError(
                400,
                "CALLBACK_HOST_NOT_ALLOWED",
                f"callback.url: this service calls back only the hosts in its callbacks.allowedHosts, "
                f"and {submission.callback.host!r} is not one of them",
            )
        task_id = uuid.uuid4().hex
        capacity = self._capacity[pool.id]
        try:
            ticket = capacity.enter(task_id)
        except QueueFull:
            raise DispatchError(
                429,
                "QUEUE_FULL",
                f"pool {pool.id!r} runs {capacity.running} tasks (its cap) and {capacity.queued} wait "
                "(its queueLimit); retry later",
                1,
            ) from None
        spec = TaskSpec(
            pool_id=pool.id,
            participant=pool.participant,
            title=submission.title,
            instructions=submission.instructions,
            input=submission.input,
            ttl_ms=submission.ttl_ms or pool.task_ttl_ms,
            callback=submission.callback,
        )
        task = Task(task_id, str(uuid.uuid4()), spec, self._clock())
        task.advance(QUEUED, {"position": capacity.position(task_id) or 0}, self._clock())
        self._remember(task)
        runner = asyncio.create_task(self._run(task, ticket), name=f"task-{task_id}")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)
        log.info("task %s queued for pool %s (session %s)", task_id, pool.id, task.session_id)
        return task

    def _pool_for(self, submission: Submission) -> AgentPool:
        for bridge in self._bridges.values():
            if submission.pool == bridge.config.id or submission.agent == bridge.config.participant:
                return bridge.config
        if submission.pool is not None:
            known = ", ".join(sorted(self._bridges)) or "none"
            raise DispatchError(404, "POOL_NOT_FOUND", f"no pool {submission.pool!r}; pools: {known}")
        agents = ", ".join(sorted(b.config.participant for b in self._bridges.values())) or "none"
        raise DispatchError(
            404, "POOL_NOT_FOUND", f"no pool acts as agent {submission.agent!r}; agents: {agents}"
        )

    def _remember(self, task: Task) -> None:
        self._tasks[task.task_id] = task
        if len(self._tasks) <= MAX_TASKS:
            return
        for old_id in [tid for tid, old in self._tasks.items() if old.terminal][
            : len(self._tasks) - MAX_TASKS
        ]:
            del self._tasks[old_id]

    # ------------------------------------------------------------------ queries
    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def pools(self) -> list[dict[str, Any]]:
        rows = []
        for pool_id, bridge in self._bridges.items():
            capacity = self._capacity[pool_id]
            rows.append(
                {
                    "id": pool_id,
                    "agent": bridge.participant,
                    "instances": bridge.config.process.instances,
                    "workers": len(bridge.pool.workers),
                    "failed": bridge.pool.failed,
                    "cap": capacity.cap,
                    "queueLimit": capacity.queue_limit,
                    "running": capacity.running,
                    "queued": capacity.queued,
                }
            )
        return rows

    # ------------------------------------------------------------------ running
    async def _run(self, task: Task, ticket: asyncio.Future[bool]) -> None:
        capacity = self._capacity[task.spec.pool_id]
        try:
            if not await ticket:
                return  # withdrawn from the queue: cancel() recorded why
            try:
                await self._execute(task)
            finally:
                capacity.release()
        finally:
            if task.terminal:
                self._callbacks.deliver(task)

    async def _execute(self, task: Task) -> None:
        if self._bridges[task.spec.pool_id].pool.failed:
            message = f"every worker of pool {task.spec.pool_id!r} exceeded its restart limit"
            task.advance(ERROR, {"error": {"code": "POOL_FAILED", "message": message}}, self._clock())
            return
        run = TaskRun(task, self._client, self._clock)
        self._runs[task.session_id] = run
        try:
            await run.execute()
        except Exception:  # a bug here must not leave the task hanging, or the slot held
            log.exception("task %s failed unexpectedly", task.task_id)
            message = "the dispatcher hit an unexpected error; see its log"
            task.advance(ERROR, {"error": {"code": "INTERNAL_ERROR", "message": message}}, self._clock())
        finally:
            del self._runs[task.session_id]
        log.info("task %s ended: %s", task.task_id, task.status)

    async def cancel(self, task_id: str, reason: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise DispatchError(404, "TASK_NOT_FOUND", f"no task {task_id!r}")
        if task.terminal:
            raise DispatchError(409, "TASK_ENDED", f"task {task_id} already ended ({task.status})")
        if self._capacity[task.spec.pool_id].withdraw(task_id):
            task.advance(CANCELLED, {"reason": reason}, self._clock())
            return task
        run = self._runs.get(task.session_id)
        if run is None:  # between leaving the queue and starting: let it start, then cancel
            await task.wait_for_event(len(task.events), CANCEL_WAIT_S)
            run = self._runs.get(task.session_id)
            if run is None or task.terminal:
                return task
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        run.post(CancelRequest(reason, done))
        try:
            await asyncio.wait_for(asyncio.shield(done), CANCEL_WAIT_S)
        except CallError as error:
            raise DispatchError(
                503, "RUNTIME_UNAVAILABLE", f"the runtime did not cancel the task's session: {error}", 1
            ) from None
        except TimeoutError:
            pass  # still in progress: the task shows its status as it is
        return task

    # ------------------------------------------------------------------ signals from the service
    def session_changed(self, metadata: core_pb2.SessionMetadata) -> None:
        run = self._runs.get(metadata.session_id)
        if run is not None and is_terminal(metadata.state):
            run.post(Ended(metadata.state))

    def progress(self, envelope: Envelope) -> None:
        """A Progress the pool's participant sent in a task session (from the bridge)."""
        run = self._runs.get(envelope.session_id)
        if run is not None:
            run.post(envelope)

    def worker_lost(self, session_id: str, what: str) -> None:
        run = self._runs.get(session_id)
        if run is not None:
            run.post(Lost(what))

    async def stop(self, grace: float) -> None:
        """Cancel what is still queued or running (their sessions too), then stop callbacks."""
        reason = "pymacp agents is shutting down"
        cancels = [
            asyncio.ensure_future(self.cancel(task.task_id, reason))
            for task in list(self._tasks.values())
            if not task.terminal
        ]
        if cancels:
            await asyncio.wait(cancels, timeout=grace)
        for cancel in cancels:
            cancel.cancel()
        await asyncio.gather(*cancels, return_exceptions=True)
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        await self._callbacks.aclose(grace)
