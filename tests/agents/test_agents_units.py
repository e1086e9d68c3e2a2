"""The pieces of dispatch that need no processes: submission, capacity, lifecycle, callbacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from types import SimpleNamespace
from typing import Any

import pytest
from agents_support import CallbackReceiver

from pymacp.bus.agents import methods
from pymacp.bus.agents.callbacks import CallbackSender, retryable, schedule, sign, verify
from pymacp.bus.agents.capacity import Capacity, QueueFull
from pymacp.bus.agents.config import AgentPool, CallbackSettings
from pymacp.bus.agents.dispatch import Dispatcher, DispatchError
from pymacp.bus.agents.submission import Invalid, parse_submission
from pymacp.bus.agents.tasks import TRANSITIONS, Callback, Task, TaskSpec, bytes_json
from pymacp.bus.config import PoolConfig
from pymacp.kernel.envelope import Envelope

# ---------------------------------------------------------------------- submission


def test_a_full_submission() -> None:
    parsed = parse_submission(
        {
            "agent": "agent://tasks",
            "task": {"title": "Sum", "instructions": "add", "input": {"numbers": [1, 2], "note": "ünï"}},
            "callback": {"url": "https://hooks.example/done?x=1", "bearer": "b"},
            "ttlMs": 5000,
        }
    )
    assert (parsed.pool, parsed.agent, parsed.title, parsed.ttl_ms) == (None, "agent://tasks", "Sum", 5000)
    assert json.loads(parsed.input) == {"numbers": [1, 2], "note": "ünï"}
    assert parsed.callback == Callback("https://hooks.example/done?x=1", "b")
    assert "b'" not in repr(parsed.callback) and "bearer='b'" not in repr(parsed.callback)
    assert parse_submission({"pool": "p", "task": {"title": "t"}}).input == b""  # no input: empty bytes


def with_callback(callback: Any) -> dict[str, Any]:
    return {"pool": "p", "task": {"title": "t"}, "callback": callback}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": {"title": "t"}}, "pool"),
        ({"pool": "p", "agent": "a", "task": {"title": "t"}}, "pool"),
        ({"pool": "", "task": {"title": "t"}}, "pool"),
        ({"pool": "p", "task": {"title": "t", "instructions": 3}}, "task.instructions"),
        ({"pool": "p", "task": {"title": "t", "input": float("nan")}}, "task.input"),
        ({"pool": "p", "task": {"title": "x" * 1001}}, "task.title"),
        ({"pool": "p", "task": {"title": "t"}, "callback": "https://x"}, "callback"),
        ({"pool": "p", "task": {"title": "t"}, "callback": {"url": "https://u:p@x/"}}, "callback.url"),
        ({"pool": "p", "task": {"title": "t"}, "callback": {"url": "/relative"}}, "callback.url"),
        (
            {"pool": "p", "task": {"title": "t"}, "callback": {"url": "https://x", "bearer": "a\nb"}},
            "callback.bearer",
        ),
        (
            {"pool": "p", "task": {"title": "t"}, "callback": {"url": "https://x", "secret": "s"}},
            "callback.secret",
        ),
        ({"pool": "p", "task": {"title": "t"}, "ttlMs": True}, "ttlMs"),
    ],
)
def test_submission_refusals_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_submission(body)
    assert caught.value.field == field


# ---------------------------------------------------------------------- capacity


async def test_capacity_runs_at_most_cap_and_hands_slots_over_in_order() -> None:
    capacity = Capacity(cap=2, queue_limit=2)
    tickets = [capacity.enter(name) for name in "abcd"]
    with pytest.raises(QueueFull):
        capacity.enter("e")
    assert [t.done() for t in tickets] == [True, True, False, False]
    assert (capacity.running, capacity.queued, capacity.position("c"), capacity.position("d")) == (2, 2, 1, 2)
    assert capacity.withdraw("c") and not capacity.withdraw("c")
    assert await tickets[2] is False
    capacity.release()
    assert await tickets[3] is True
    assert (capacity.running, capacity.queued) == (2, 0)
    capacity.release()
    capacity.release()
    assert capacity.running == 0
    assert await capacity.enter("f") is True


async def test_a_cap_of_zero_queues_everything_and_a_zero_queue_refuses() -> None:
    nothing_runs = Capacity(cap=0, queue_limit=1)
    assert not nothing_runs.enter("a").done()
    with pytest.raises(QueueFull):
        nothing_runs.enter("b")
    no_queue = Capacity(cap=1, queue_limit=0)
    assert await no_queue.enter("a") is True
    with pytest.raises(QueueFull):
        no_queue.enter("b")


# ---------------------------------------------------------------------- lifecycle


async def test_the_lifecycle_table_is_enforced() -> None:
    task = Task("t", "s", TaskSpec("pool", "agent://p", "title"), 0)
    assert task.advance("queued", {}, 1)
    assert not task.advance("completed", {"result": {}}, 2)  # a task is dispatched and accepted first
    for status in ("dispatched", "started", "streaming", "streaming"):
        assert task.advance(status, {}, 3)
    assert task.advance("completed", {"result": {"output": 1}}, 4)
    assert task.terminal and task.result == {"output": 1}
    assert not task.advance("error", {"error": {"code": "X"}}, 5)  # nothing follows an end
    assert [e.seq for e in task.events] == [1, 2, 3, 4, 5, 6]
    assert all(not TRANSITIONS[end] for end in ("completed", "error", "cancelled"))
    assert task.to_json()["lastEventId"] == 6 and "callback" not in task.to_json()


async def test_waiting_for_an_event_wakes_on_the_next_one() -> None:
    task = Task("t", "s", TaskSpec("pool", "agent://p", "title"), 0)
    task.advance("queued", {}, 1)
    waiter = asyncio.ensure_future(task.wait_for_event(1, 30))
    await asyncio.sleep(0)
    assert not waiter.done()
    task.advance("dispatched", {}, 2)
    await asyncio.wait_for(waiter, 5)


def test_worker_bytes_read_as_json_when_they_are() -> None:
    assert bytes_json(b'{"a": 1}', "output") == {"output": {"a": 1}}
    assert bytes_json(b"\xff\x00", "output") == {"outputB64": base64.b64encode(b"\xff\x00").decode()}
    assert bytes_json(b"plain text", "output") == {"outputB64": base64.b64encode(b"plain text").decode()}
    assert bytes_json(b"", "output") == {}


# ---------------------------------------------------------------------- callbacks


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"event":"completed"}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, 1_700_000_000, body) == f"sha256={expected}"
    assert verify("k" * 16, "1700000000", f"sha256={expected}", body, now=1_700_000_100)
    assert not verify("k" * 16, "1700000000", f"sha256={expected}", body + b" ", now=1_700_000_100)
    assert not verify("k" * 16, "1700000000", f"sha256={expected}", body, now=1_700_000_301)  # too old
    assert not verify("x" * 16, "1700000000", f"sha256={expected}", body, now=1_700_000_000)
    assert not verify("k" * 16, "soon", f"sha256={expected}", body, now=1_700_000_000)
    assert not verify("k" * 16, "1700000000", "sha256=\u00e9t\u00e9", body, now=1_700_000_000)  # non-ASCII
    assert not verify("k" * 16, "\u00b2", f"sha256={expected}", body, now=1_700_000_000)  # a digit, not ASCII


def test_the_retry_schedule_is_fixed_and_capped() -> None:
    settings = CallbackSettings("s" * 16, max_attempts=6, backoff_ms=1000, max_backoff_ms=5000)
    assert schedule(settings) == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert schedule(CallbackSettings("s" * 16, max_attempts=1)) == []
    assert [retryable(s) for s in (200, 400, 404, 408, 425, 429, 500, 503)] == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
    ]


def finished_task(url: str) -> Task:
    task = Task("task-1", "s", TaskSpec("pool", "agent://p", "title", callback=Callback(url, None)), 0)
    for status in ("queued", "dispatched", "started"):
        task.advance(status, {}, 1)
    task.advance("completed", {"result": {"summary": "ok"}}, 2)
    return task


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_receiver_is_retried_then_given_up() -> None:
    sender = CallbackSender(CallbackSettings("s" * 16, max_attempts=3, backoff_ms=1, timeout_ms=2000))
    task = finished_task(f"http://127.0.0.1:{closed_port()}/hook")
    sender.deliver(task)
    sender.deliver(task)  # once per task, whoever asks again
    await sender.aclose(grace=30)
    assert task.delivery is not None
    assert (task.delivery.status, task.delivery.attempts) == ("failed", 3)
    assert task.delivery.last_error and "Connect" in task.delivery.last_error


async def test_a_permanent_refusal_is_not_retried() -> None:
    with CallbackReceiver() as receiver:
        receiver._answer = lambda path, headers: 410  # type: ignore[method-assign]
        sender = CallbackSender(CallbackSettings("s" * 16, max_attempts=5, backoff_ms=1))
        task = finished_task(f"{receiver.url}/gone")
        sender.deliver(task)
        await sender.aclose(grace=30)
        assert task.delivery is not None
        assert (task.delivery.status, task.delivery.attempts) == ("failed", 1)
        assert task.delivery.last_error == "the receiver answered HTTP 410"
        assert len(receiver.for_task("task-1")) == 1


# ---------------------------------------------------------------------- bridge methods


def test_envelopes_reach_workers_in_canonical_json() -> None:
    envelope = Envelope("1.0", "macp.mode.task.v1", "TaskAccept", "m1", "s1", "agent://p", 0, b"")
    line = json.loads(methods.envelope_notification("agent://p", envelope))
    assert line["method"] == "macp/envelope" and line["sessionId"] == "s1"
    assert line["params"]["envelope"] == {
        "macp_version": "1.0",
        "mode": "macp.mode.task.v1",
        "message_type": "TaskAccept",
        "message_id": "m1",
        "session_id": "s1",
        "sender": "agent://p",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "payload": {"task_id": "", "assignee": "", "reason": ""},
    }
    ended = json.loads(methods.session_ended_notification("agent://p", "s1", "SESSION_STATE_EXPIRED"))
    assert ended["params"] == {
        "sessionId": "s1",
        "participant": "agent://p",
        "state": "SESSION_STATE_EXPIRED",
    }


def test_a_send_is_built_with_the_bridge_defaults_and_the_participant_as_sender() -> None:
    built = methods.envelope_for_send(
        {
            "sessionId": "s1",
            "envelope": {"message_type": "TaskUpdate", "payload": {"task_id": "t"}, "sender": "x"},
        },
        participant="agent://p",
        session_id="s1",
        session_mode="macp.mode.task.v1",
        now_ms=1000,
        new_id=lambda: "generated",
    )
    assert isinstance(built, Envelope)
    assert (built.sender, built.mode, built.message_id, built.timestamp_unix_ms) == (
        "agent://p",
        "macp.mode.task.v1",
        "generated",
        1000,
    )
    opaque = methods.envelope_for_send(
        {"envelope": {"message_type": "Custom", "payload_b64": "AAE=", "mode": "ext.x.v1"}},
        participant="agent://p",
        session_id="s1",
        session_mode=None,
        now_ms=0,
        new_id=lambda: "g",
    )
    assert isinstance(opaque, Envelope) and opaque.payload == b"\x00\x01"


def test_only_text_chunks_are_progress() -> None:
    chunk = {"update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "hi"}}}
    assert methods.chunk_text(chunk) == "hi"
    assert methods.chunk_text({"update": {"sessionUpdate": "tool_call", "content": {"text": "hi"}}}) is None
    assert (
        methods.chunk_text({"update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "image"}}})
        is None
    )
    assert methods.update_session({"sessionId": "acp"}, None) == "acp"
    assert methods.update_session({"sessionId": "acp"}, "routed") == "routed"


# ---------------------------------------------------------------------- admission


def fake_bridge(pool_id: str, cap: int, workers: int = 1, failed: bool = False) -> Any:
    config = AgentPool(PoolConfig(pool_id, "true"), f"agent://{pool_id}", "token", cap, 1, 1000)
    pool = SimpleNamespace(workers=[object()] * workers, failed=failed)
    return SimpleNamespace(config=config, participant=config.participant, pool=pool)


async def test_a_callback_host_outside_the_allowed_list_is_refused_at_admission() -> None:
    sender = CallbackSender(CallbackSettings(secret="s" * 32, allowed_hosts=("hooks.example.com",)))
    dispatcher = Dispatcher(None, {"p": fake_bridge("p", cap=1)}, sender)  # type: ignore[arg-type]
    body = {"pool": "p", "task": {"title": "t"}, "callback": {"url": "http://169.254.169.254/latest"}}
    with pytest.raises(DispatchError) as caught:
        dispatcher.submit(parse_submission(body))
    assert (caught.value.status, caught.value.code) == (400, "CALLBACK_HOST_NOT_ALLOWED")
    assert "'169.254.169.254'" in caught.value.message
    await sender.aclose(0)


@pytest.mark.parametrize(
    ("bridge", "callback", "status", "code"),
    [
        (fake_bridge("p", cap=1, failed=True, workers=0), None, 503, "POOL_FAILED"),
        (fake_bridge("p", cap=1, workers=0), None, 503, "NO_WORKER"),
        (fake_bridge("p", cap=0), None, 409, "DISPATCH_DISABLED"),
        (fake_bridge("p", cap=1), {"url": "https://hooks.example/x"}, 400, "CALLBACKS_DISABLED"),
    ],
)
async def test_admission_refusals(bridge: Any, callback: Any, status: int, code: str) -> None:
    sender = CallbackSender(CallbackSettings(secret=None))
    dispatcher = Dispatcher(None, {"p": bridge}, sender)  # type: ignore[arg-type]
    body: dict[str, Any] = {"pool": "p", "task": {"title": "t"}}
    if callback is not None:
        body["callback"] = callback
    with pytest.raises(DispatchError) as caught:
        dispatcher.submit(parse_submission(body))
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.message
    await sender.aclose(0)
