"""What a worker writes to the bridge, and what it gets back, byte for byte.

A real :class:`~pymacp.bus.pool.Pool` runs a scripted worker process; the runtime is a
recording stand-in, so each answer (an Ack, a refusal, an outage) can be chosen.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from macp.v1 import core_pb2, envelope_pb2

from pymacp.bus.agents.bridge import Bridge
from pymacp.bus.agents.client import CallError
from pymacp.bus.agents.config import AgentPool
from pymacp.bus.config import Limits, PoolConfig
from pymacp.kernel.envelope import Envelope

SCRIPT = Path(__file__).with_name("scripted_worker.py")
SESSION = "0b6a9a8e-6a4f-4a3c-9a55-6f0f4d0c2b11"
TASK = "macp.mode.task.v1"


class RecordingRuntime:
    """Answers each Send from ``answers`` (by message type), slowly, and records the order."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.sent: list[Envelope] = []

    async def send(self, envelope: Envelope) -> envelope_pb2.Ack:
        await asyncio.sleep(0.05)  # latency: a later request must still wait for this one
        self.sent.append(envelope)
        answer = self.answers[envelope.message_type]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


def ok(message_id: str = "m") -> envelope_pb2.Ack:
    return envelope_pb2.Ack(ok=True, message_id=message_id, session_id=SESSION, accepted_at_unix_ms=5)


def send(request_id: int, envelope: dict[str, Any], session: str = SESSION) -> dict[str, Any]:
    params = {"sessionId": session, "envelope": envelope}
    return {"jsonrpc": "2.0", "id": request_id, "method": "macp/send", "sessionId": session, "params": params}


async def run_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[Any], runtime: RecordingRuntime, replies: int
) -> tuple[list[Envelope], list[dict[str, Any]]]:
    """Run the scripted worker under a bridge until it has received ``replies`` lines."""
    script, out = tmp_path / "script.ndjson", tmp_path / "out.ndjson"
    encoded = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
    script.write_bytes(b"".join(line + b"\n" for line in encoded))
    out.touch()
    monkeypatch.setenv("SCRIPTED_WORKER_LINES", str(script))
    monkeypatch.setenv("SCRIPTED_WORKER_OUT", str(out))
    process = PoolConfig("scripted", sys.executable, (str(SCRIPT),), 1)
    bridge = Bridge(AgentPool(process, "agent://scripted", "token", 1, 1, 1000), runtime, Limits())  # type: ignore[arg-type]
    progress: list[Envelope] = []
    bridge.on_progress = progress.append
    await bridge.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while out.read_bytes().count(b"\n") < replies:
            assert asyncio.get_running_loop().time() < deadline, f"only got: {out.read_text()}"
            await asyncio.sleep(0.02)
    finally:
        await bridge.stop()
    return progress, [json.loads(line) for line in out.read_bytes().splitlines()]


async def test_requests_are_sent_in_order_as_the_participant_and_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = RecordingRuntime(
        {
            "TaskAccept": ok("accept-1"),
            "TaskUpdate": envelope_pb2.Ack(
                ok=False, message_id="u", error=envelope_pb2.MACPError(code="FORBIDDEN", message="not yours")
            ),
            "TaskComplete": CallError("UNAVAILABLE", "", "connection refused", True),
            "TaskFail": CallError("UNAUTHENTICATED", "UNAUTHENTICATED", "sender mismatch", False),
            "Progress": ok("p-1"),
        }
    )
    accept = {
        "mode": TASK,
        "message_type": "TaskAccept",
        "message_id": "accept-1",
        "sender": "agent://mallory",
        "payload": {"task_id": "t"},
    }
    lines = [
        send(1, accept),
        send(2, {"mode": TASK, "message_type": "TaskUpdate", "payload": "not an object"}),
        send(3, {"mode": TASK, "message_type": "TaskUpdate", "payload": {"task_id": "t", "progress": 0.5}}),
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {}},
        send(5, {"message_type": "TaskUpdate", "payload": {"task_id": "t"}}, session="not-followed"),
        b"this is not JSON",
        send(6, {"mode": TASK, "message_type": "TaskComplete", "payload": {"task_id": "t"}}),
        send(7, {"mode": TASK, "message_type": "TaskFail", "payload": {"task_id": "t"}}),
        send(8, {"mode": TASK, "message_type": "Progress", "payload": {"message": "half way"}}),
        {
            "jsonrpc": "2.0",
            "method": "session/update",
            "sessionId": SESSION,
            "params": {"update": {"sessionUpdate": "agent_message_chunk", "content": {"text": "x"}}},
        },
    ]
    progress, replies = await run_script(tmp_path, monkeypatch, lines, runtime, replies=8)
    by_id = {reply["id"]: reply for reply in replies}
    assert sorted(by_id) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(reply["jsonrpc"] == "2.0" for reply in replies)

    assert by_id[1]["result"]["ok"] is True and by_id[1]["result"]["message_id"] == "accept-1"
    assert by_id[1]["result"]["accepted_at_unix_ms"] == 5 and by_id[1]["sessionId"] == SESSION
    assert by_id[2]["error"]["code"] == -32602 and by_id[2]["error"]["data"] == {"code": "INVALID_ENVELOPE"}
    assert by_id[3]["error"]["code"] == -32001
    assert by_id[3]["error"]["data"]["code"] == "FORBIDDEN"
    assert by_id[3]["error"]["data"]["ack"]["error"]["message"] == "not yours"
    assert by_id[4]["error"]["code"] == -32601 and "macp/send" in by_id[4]["error"]["message"]
    assert by_id[5]["error"]["code"] == -32602 and "envelope.mode is required" in by_id[5]["error"]["message"]
    assert by_id[6]["error"]["code"] == -32002 and by_id[6]["error"]["data"] == {"code": "UNAVAILABLE"}
    assert by_id[7]["error"]["code"] == -32001 and by_id[7]["error"]["data"]["code"] == "UNAUTHENTICATED"

    # What reached the runtime: in the worker's order, every one as the pool's participant.
    assert [e.message_type for e in runtime.sent] == [
        "TaskAccept",
        "TaskUpdate",
        "TaskComplete",
        "TaskFail",
        "Progress",
    ]
    assert {e.sender for e in runtime.sent} == {"agent://scripted"}
    assert runtime.sent[0].message_id == "accept-1" and runtime.sent[0].session_id == SESSION
    # An accepted Progress is handed on (the dispatcher's view); the chunk was for a session
    # this worker does not hold, so it was not sent at all.
    assert [core_pb2.ProgressPayload.FromString(e.payload).message for e in progress] == ["half way"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], "params must be an object"),
        ({"sessionId": SESSION}, "needs params.envelope"),
        (
            {"sessionId": SESSION, "envelope": {"session_id": "other", "message_type": "X", "payload": {}}},
            "differs",
        ),
    ],
)
async def test_malformed_sends_are_refused_without_reaching_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: Any, expected: str
) -> None:
    runtime = RecordingRuntime({})
    line = {"jsonrpc": "2.0", "id": "a", "method": "macp/send", "params": params}
    _, replies = await run_script(tmp_path, monkeypatch, [line], runtime, replies=1)
    assert replies[0]["id"] == "a" and replies[0]["error"]["code"] == -32602
    assert expected in replies[0]["error"]["message"]
    assert runtime.sent == []


async def test_an_unexpected_failure_still_answers_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = RecordingRuntime({"TaskAccept": RuntimeError("a bug"), "TaskUpdate": ok("u-1")})
    lines = [
        send(1, {"mode": TASK, "message_type": "TaskAccept", "payload": {"task_id": "t"}}),
        send(2, {"mode": TASK, "message_type": "TaskUpdate", "payload": {"task_id": "t"}}),
    ]
    _, replies = await run_script(tmp_path, monkeypatch, lines, runtime, replies=2)
    by_id = {reply["id"]: reply for reply in replies}
    assert by_id[1]["error"]["code"] == -32603 and "see its log" in by_id[1]["error"]["message"]
    assert by_id[2]["result"]["ok"] is True  # the session's next request is still served
