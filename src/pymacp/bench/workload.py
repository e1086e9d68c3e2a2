"""The benchmark workload: Task-mode sessions fed with TaskUpdate envelopes.

A session is opened by the initiator ``i`` with the single participant ``w``; ``i`` sends
the TaskRequest naming ``w`` and ``w`` takes it with TaskAccept. From then on ``w`` may
send TaskUpdate envelopes without end, each one cheap to decide, which makes it the unit
of load. Every envelope gets a fresh ``message_id``, so nothing is deduplicated.

The same builders feed the gRPC load generators, the baselines (which must see and answer
messages of the same size) and the fixtures written directly into SQLite.
"""

from __future__ import annotations

import time
import uuid

from macp.modes.task.v1 import task_pb2
from macp.v1 import core_pb2, envelope_pb2

MODE = "macp.mode.task.v1"
MODE_VERSION = "1.0.0"
CONFIGURATION_VERSION = "config.default"
INITIATOR = "i"
WORKER = "w"
TASK_ID = "t"
TTL_MS = 86_400_000  # the kernel's maximum: fixture sessions stay open through the whole run
SETUP_ENVELOPES = 3  # SessionStart, TaskRequest, TaskAccept
CALL_TIMEOUT_S = 30.0

Metadata = tuple[tuple[str, str], ...]


def bearer(sender: str) -> Metadata:
    """Development-mode auth: the bearer value is the sender's identity."""
    return (("authorization", f"Bearer {sender}"),)


def new_session_id() -> str:
    return str(uuid.uuid4())


def _envelope(message_type: str, session_id: str, sender: str, payload: bytes) -> envelope_pb2.Envelope:
    return envelope_pb2.Envelope(
        macp_version="1.0",
        mode=MODE,
        message_type=message_type,
        message_id=str(uuid.uuid4()),
        session_id=session_id,
        sender=sender,
        timestamp_unix_ms=int(time.time() * 1000),
        payload=payload,
    )


def start_envelope(session_id: str, ttl_ms: int = TTL_MS) -> envelope_pb2.Envelope:
    payload = core_pb2.SessionStartPayload(
        intent="pymacp bench",
        participants=[WORKER],
        mode_version=MODE_VERSION,
        configuration_version=CONFIGURATION_VERSION,
        ttl_ms=ttl_ms,
    )
    return _envelope("SessionStart", session_id, INITIATOR, payload.SerializeToString())


def request_envelope(session_id: str) -> envelope_pb2.Envelope:
    payload = task_pb2.TaskRequestPayload(task_id=TASK_ID, title="bench", requested_assignee=WORKER)
    return _envelope("TaskRequest", session_id, INITIATOR, payload.SerializeToString())


def accept_envelope(session_id: str) -> envelope_pb2.Envelope:
    payload = task_pb2.TaskAcceptPayload(task_id=TASK_ID, assignee=WORKER)
    return _envelope("TaskAccept", session_id, WORKER, payload.SerializeToString())


def update_envelope(session_id: str) -> envelope_pb2.Envelope:
    payload = task_pb2.TaskUpdatePayload(task_id=TASK_ID, status="working", progress=0.5, message="step")
    return _envelope("TaskUpdate", session_id, WORKER, payload.SerializeToString())


def ack_response(env: envelope_pb2.Envelope) -> core_pb2.SendResponse:
    """A SendResponse exactly as large as the runtime's ack for an accepted ``env``."""
    ack = envelope_pb2.Ack(
        ok=True,
        message_id=env.message_id,
        session_id=env.session_id,
        accepted_at_unix_ms=int(time.time() * 1000),
        session_state=1,  # SESSION_STATE_OPEN
    )
    return core_pb2.SendResponse(ack=ack)
