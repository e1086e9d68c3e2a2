"""One dispatched task's session (``macp.mode.task.v1``), driven by the dispatcher.

Theory of operation. The dispatcher is the session's initiator, with its own token; the
pool's participant is the only other participant and the TaskRequest's
``requested_assignee``, so only that pool can take the task (the runtime enforces this).

1. SessionStart, then TaskRequest (``task_id`` = the task id; ``input`` = the input as JSON
   text). A passive subscription then feeds the session's envelopes into the run's inbox,
   together with what the service learns elsewhere: the session ended (WatchSessions), the
   worker holding the session died (the bridge), or a cancel was asked for (the API).
2. The worker's envelopes move the task (:mod:`.tasks`): TaskAccept -> ``started``;
   TaskUpdate, Progress -> ``streaming``; TaskComplete -> the dispatcher commits
   ``task.completed`` -> ``completed``; TaskFail -> it commits ``task.failed`` -> ``error``.
   A TaskReject leaves nobody to do the task: ``error``, and the session is cancelled.
3. A dead worker cannot report, and a task session cannot be resolved without a report
   (the task mode requires a TaskComplete or TaskFail before a Commitment, and only the
   assignee may send those), so the dispatcher first reads the rest of the session -- a
   TaskComplete the worker sent just before dying still counts -- and otherwise records
   ``error`` (WORKER_CRASHED) and cancels the session, which the initiator may always do.
4. The session expiring (its TTL is the pool's ``taskTtlMs``) is ``error`` (EXPIRED); a
   cancel through the API is CancelSession and ``cancelled``.

Sends are retried on transient failures with the same message id, which the runtime
deduplicates, so a retry can never apply an envelope twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError, Message
from macp.modes.task.v1 import task_pb2
from macp.v1 import core_pb2, envelope_pb2

from pymacp.kernel.envelope import COMMITMENT, PROGRESS, SESSION_START, Envelope

from .client import AgentClient, CallError
from .feed import SessionFeed
from .tasks import CANCELLED, COMPLETED, DISPATCHED, ERROR, STARTED, STREAMING, Task, bytes_json
from .watch import is_terminal, state_name

log = logging.getLogger("pymacp.agents")

TASK_MODE = "macp.mode.task.v1"
MODE_VERSION = "1.0.0"
CONFIGURATION_VERSION = "pymacp-agents/1"
MACP_VERSION = "1.0"
SEND_ATTEMPTS = 4
EXPIRY_CHECK_S = 5.0  # past the TTL, how often to ask the runtime whether the session expired


@dataclass(frozen=True, slots=True)
class Ended:
    state: int


@dataclass(frozen=True, slots=True)
class Lost:
    what: str


@dataclass(frozen=True, slots=True)
class Drained:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    reason: str
    done: asyncio.Future[bool]  # True: cancelled; False: the task had already ended


Item = Envelope | Ended | Lost | Drained | CancelRequest


def now_ms() -> int:
    return int(time.time() * 1000)


class TaskRun:
    def __init__(self, task: Task, client: AgentClient, clock: Callable[[], int] = now_ms) -> None:
        self.task = task
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        self._client = client
        self._clock = clock
        self._participant = task.spec.participant
        self._feed = SessionFeed(client, task.session_id, self.post, f"dispatcher (task {task.task_id})")
        self._lost: str | None = None
        self._deadline_ms = 0

    def post(self, item: Item) -> None:
        self.inbox.put_nowait(item)

    async def execute(self) -> None:
        """Run the task until it is terminal."""
        try:
            if await self._start():
                await self._loop()
        finally:
            await self._feed.stop()
            while not self.inbox.empty():  # cancels that came too late
                item = self.inbox.get_nowait()
                if isinstance(item, CancelRequest) and not item.done.done():
                    item.done.set_result(False)

    # ------------------------------------------------------------------ start
    async def _start(self) -> bool:
        task, spec = self.task, self.task.spec
        start = core_pb2.SessionStartPayload(
            intent=f"pymacp agents task {task.task_id}: {spec.title}",
            participants=[self._participant],
            mode_version=MODE_VERSION,
            configuration_version=CONFIGURATION_VERSION,
            policy_version="",
            ttl_ms=spec.ttl_ms,
        )
        ack = await self._send(SESSION_START, start)
        if ack is None:  # it may have started all the same, with the answer lost: end it
            self._error(
                "RUNTIME_UNAVAILABLE", "the task's session could not be started: the runtime is unreachable"
            )
            await self._cancel_session("the dispatcher could not confirm the session's start")
            return False
        if not ack.ok:
            self._error(_ack_code(ack), f"the runtime did not start the task's session: {_ack_text(ack)}")
            return False
        self._deadline_ms = self._clock() + spec.ttl_ms
        self._feed.start()
        request = task_pb2.TaskRequestPayload(
            task_id=task.task_id,
            title=spec.title,
            instructions=spec.instructions,
            requested_assignee=self._participant,
            input=spec.input,
        )
        if not await self._send_or_fail("TaskRequest", request, "the runtime refused the TaskRequest"):
            await self._cancel_session("the TaskRequest was refused")
            return False
        self._advance(DISPATCHED, {"sessionId": task.session_id, "assignee": self._participant})
        return True

    # ------------------------------------------------------------------ loop
    async def _loop(self) -> None:
        while not self.task.terminal:
            wait_s = max((self._deadline_ms - self._clock()) / 1000, 0) + 1.0
            try:
                item = await asyncio.wait_for(self.inbox.get(), wait_s)
            except TimeoutError:
                await self._check_expiry()
                continue
            if isinstance(item, Envelope):
                await self._envelope(item)
            elif isinstance(item, Lost):
                self._lost = item.what
                await self._feed.finish()  # a report sent just before the crash still counts
                self.post(Drained())
            elif isinstance(item, Drained):
                await self._fail("WORKER_CRASHED", f"the worker died before reporting: {self._lost}")
            elif isinstance(item, Ended):
                self._ended(item.state)
            else:
                await self._cancel(item)

    async def _envelope(self, envelope: Envelope) -> None:
        if envelope.sender != self._participant:
            return  # our own SessionStart, TaskRequest and Commitment
        kind = envelope.message_type
        if kind == "TaskAccept":
            self._advance(STARTED, {"assignee": envelope.sender})
        elif kind == "TaskUpdate":
            update = _decode(task_pb2.TaskUpdatePayload, envelope)
            data = {
                "source": kind,
                "status": update.status,
                "progress": update.progress,
                "message": update.message,
            }
            self._advance(STREAMING, {**data, **bytes_json(bytes(update.partial_output), "partialOutput")})
        elif kind == PROGRESS:
            progress = _decode(core_pb2.ProgressPayload, envelope)
            self._advance(
                STREAMING, {"source": kind, "progress": progress.progress, "message": progress.message}
            )
        elif kind == "TaskComplete":
            await self._complete(_decode(task_pb2.TaskCompletePayload, envelope))
        elif kind == "TaskFail":
            await self._failed(_decode(task_pb2.TaskFailPayload, envelope))
        elif kind == "TaskReject":
            reject = _decode(task_pb2.TaskRejectPayload, envelope)
            await self._fail(
                "TASK_REJECTED", f"the worker declined the task: {reject.reason or 'no reason given'}"
            )

    async def _complete(self, report: task_pb2.TaskCompletePayload) -> None:
        result = {**bytes_json(bytes(report.output), "output"), "summary": report.summary}
        ack = await self._commit("task.completed", True, report.summary or "the worker completed the task")
        if ack is not None and ack.ok:
            self._advance(COMPLETED, {"result": result, "commitmentAction": "task.completed"})
        else:
            await self._fail(
                _ack_code(ack),
                f"the worker completed the task, but its outcome was not recorded: {_ack_text(ack)}",
            )

    async def _failed(self, report: task_pb2.TaskFailPayload) -> None:
        ack = await self._commit("task.failed", False, report.reason or "the worker failed the task")
        error = {
            "code": report.error_code or "TASK_FAILED",
            "message": report.reason,
            "retryable": report.retryable,
        }
        if ack is not None and ack.ok:
            self._advance(ERROR, {"error": error, "commitmentAction": "task.failed"})
            return
        error["commitError"] = _ack_text(ack)
        self._advance(ERROR, {"error": error})
        await self._cancel_session("the task failed and its outcome could not be recorded")

    def _ended(self, state: int) -> None:
        name = state_name(state)
        if state == envelope_pb2.SESSION_STATE_CANCELLED:
            self._advance(CANCELLED, {"reason": "the task's session was cancelled"})
        elif state == envelope_pb2.SESSION_STATE_EXPIRED:
            self._error(
                "EXPIRED", f"the task's session expired after {self.task.spec.ttl_ms} ms without an outcome"
            )
        else:
            self._error(
                "SESSION_ENDED", f"the task's session ended ({name}) without the dispatcher's outcome"
            )

    async def _check_expiry(self) -> None:
        try:
            metadata = await self._client.get_session(self.task.session_id)
        except CallError as error:
            log.info("task %s: cannot check its session (%s)", self.task.task_id, error)
            metadata = None
        if metadata is not None and is_terminal(metadata.state):
            self._ended(metadata.state)
            return
        self._deadline_ms = self._clock() + int(EXPIRY_CHECK_S * 1000)

    async def _cancel(self, request: CancelRequest) -> None:
        try:
            ack = await self._client.cancel_session(self.task.session_id, request.reason)
        except CallError as error:
            if not request.done.done():
                request.done.set_exception(error)
            return
        if not ack.ok:
            refused = CallError("FAILED_PRECONDITION", ack.error.code, ack.error.message, False)
            if not request.done.done():
                request.done.set_exception(refused)
            return
        self._advance(CANCELLED, {"reason": request.reason})
        if not request.done.done():
            request.done.set_result(True)

    # ------------------------------------------------------------------ sending
    async def _commit(self, action: str, positive: bool, reason: str) -> envelope_pb2.Ack | None:
        payload = core_pb2.CommitmentPayload(
            commitment_id=str(uuid.uuid4()),
            action=action,
            authority_scope=f"pymacp-agents pool {self.task.spec.pool_id}",
            reason=reason,
            mode_version=MODE_VERSION,
            policy_version="",
            configuration_version=CONFIGURATION_VERSION,
            outcome_positive=positive,
        )
        return await self._send(COMMITMENT, payload)

    async def _send_or_fail(self, message_type: str, payload: Message, what: str) -> bool:
        ack = await self._send(message_type, payload)
        if ack is not None and ack.ok:
            return True
        self._error(_ack_code(ack), f"{what}: {_ack_text(ack)}")
        return False

    async def _send(self, message_type: str, payload: Message) -> envelope_pb2.Ack | None:
        """Send with retries on transient failures; None if the runtime could not be reached."""
        envelope = Envelope(
            macp_version=MACP_VERSION,
            mode=TASK_MODE,
            message_type=message_type,
            message_id=str(uuid.uuid4()),
            session_id=self.task.session_id,
            sender="",  # the runtime takes it from the dispatcher's token
            timestamp_unix_ms=self._clock(),
            payload=payload.SerializeToString(),
        )
        delay = 0.2
        for attempt in range(SEND_ATTEMPTS):
            try:
                return await self._client.send(envelope)
            except CallError as error:
                if not error.transient or attempt == SEND_ATTEMPTS - 1:
                    log.warning("task %s: %s not sent: %s", self.task.task_id, message_type, error)
                    return None
            await asyncio.sleep(delay)
            delay *= 2
        return None

    async def _cancel_session(self, reason: str) -> None:
        try:
            await self._client.cancel_session(self.task.session_id, reason)
        except CallError as error:
            log.warning(
                "task %s: could not cancel session %s: %s", self.task.task_id, self.task.session_id, error
            )

    # ------------------------------------------------------------------ outcomes
    async def _fail(self, code: str, message: str) -> None:
        """Record ``error`` and end the session, which no Commitment can resolve any more."""
        self._error(code, message)
        await self._cancel_session(message)

    def _error(self, code: str, message: str) -> None:
        self._advance(ERROR, {"error": {"code": code, "message": message}})

    def _advance(self, status: str, data: dict[str, object]) -> None:
        self.task.advance(status, data, self._clock())


def _decode(cls: type[Message], envelope: Envelope) -> Any:
    message = cls()
    try:
        message.ParseFromString(envelope.payload)
    except DecodeError:  # the runtime validated it; an empty message is the safe reading
        message.Clear()
    return message


def _ack_code(ack: envelope_pb2.Ack | None) -> str:
    if ack is None:
        return "RUNTIME_UNAVAILABLE"
    return ack.error.code or "REJECTED"


def _ack_text(ack: envelope_pb2.Ack | None) -> str:
    if ack is None:
        return "the runtime could not be reached"
    return f"{ack.error.code}: {ack.error.message}"
