"""Dispatch end to end: a real runtime, a real ``pymacp agents``, real worker processes, real HTTP.

What a dispatched task goes through is read three ways -- the SSE stream, ``GET
/dispatch/{id}``, and the runtime itself (the session's history, read with the SDK) -- and
completions are received by a real HTTP server that checks every signature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from agents_support import (
    Stack,
    dispatch,
    iter_journal,
    read_events,
    runtime_session,
    session_history,
    wait_for_status,
    wait_until,
)
from macp.modes.task.v1 import task_pb2
from macp.v1 import core_pb2, envelope_pb2


def test_a_dispatched_task_completes_and_its_callback_arrives_once_signed(stack: Stack) -> None:
    with stack.agents.client() as http:
        task_input = {"chunks": ["hel", "lo"], "steps": 2, "payload": [1, 2, 3]}
        callback = {"url": f"{stack.receiver.url}/ok", "bearer": "receiver-bearer-token"}
        accepted = dispatch(http, "tasks", task_input, callback=callback)
        task_id, session_id = accepted["taskId"], accepted["sessionId"]
        assert accepted["status"] == "queued"

        events = read_events(http, task_id)
        kinds = [event["event"] for event in events]
        assert kinds == ["queued", "dispatched", "started", *["streaming"] * 4, "completed"]
        assert [event["id"] for event in events] == list(range(1, 9))
        streamed = [(e["data"]["source"], e["data"]["message"]) for e in events if e["event"] == "streaming"]
        assert streamed == [
            ("Progress", "hel"),
            ("Progress", "lo"),
            ("TaskUpdate", "step 1 of 2"),
            ("TaskUpdate", "step 2 of 2"),
        ]
        result = events[-1]["data"]["result"]
        assert result["output"]["echo"] == task_input
        assert result["summary"] == "done: test task for tasks"

        task = wait_for_status(http, task_id, "completed")
        assert task["result"] == result and task["error"] is None
        delivered = wait_until(
            lambda: http.get(f"/dispatch/{task_id}").json()["callback"]["status"] == "delivered",
            what="the callback to be delivered",
        )
        assert delivered
        received = stack.receiver.for_task(task_id)
        assert len(received) == 1
        (delivery,) = received
        assert delivery.signature_ok
        assert delivery.headers["authorization"] == "Bearer receiver-bearer-token"
        assert delivery.json["event"] == "completed"
        assert delivery.json["task"]["result"]["output"]["echo"] == task_input
        assert "callback" not in delivery.json["task"]

    # The runtime holds the whole exchange, resolved by the dispatcher's commitment.
    history = session_history(stack, session_id)
    types = [(e.message_type, e.sender) for e in history]
    assert types[:3] == [
        ("SessionStart", "agent://dispatcher"),
        ("TaskRequest", "agent://dispatcher"),
        ("TaskAccept", "agent://tasks"),
    ]
    assert types[-2:] == [("TaskComplete", "agent://tasks"), ("Commitment", "agent://dispatcher")]
    request = next(e for e in history if e.message_type == "TaskRequest")
    payload = task_pb2.TaskRequestPayload.FromString(request.payload)
    assert payload.task_id == task_id and payload.requested_assignee == "agent://tasks"
    assert json.loads(payload.input) == task_input


def test_a_callback_that_first_fails_is_retried_and_accepted_once(stack: Stack) -> None:
    with stack.agents.client() as http:
        accepted = dispatch(http, "tasks", {"steps": 0}, callback={"url": f"{stack.receiver.url}/flaky"})
        task_id = accepted["taskId"]
        wait_until(
            lambda: http.get(f"/dispatch/{task_id}").json()["callback"]["status"] == "delivered",
            what="the callback to be delivered",
        )
        task = http.get(f"/dispatch/{task_id}").json()
        assert task["callback"]["attempts"] == 2
        received = stack.receiver.for_task(task_id)
        assert [(d.answered, d.headers["x-pymacp-attempt"]) for d in received] == [(500, "1"), (200, "2")]
        assert all(d.signature_ok for d in received)
        assert received[0].body == received[1].body  # the same completion, signed afresh
        assert "authorization" not in received[0].headers


def test_reconnecting_with_last_event_id_gets_only_the_rest(stack: Stack) -> None:
    with stack.agents.client() as http:
        task_id = dispatch(http, "tasks", {"steps": 1})["taskId"]
        wait_for_status(http, task_id, "completed")
        everything = read_events(http, task_id)
        rest = read_events(http, task_id, last_event_id=2)
        assert [e["id"] for e in rest] == [e["id"] for e in everything][2:]
        assert rest[-1]["event"] == "completed"
        assert read_events(http, task_id, last_event_id=len(everything)) == []


def test_a_worker_failure_is_an_error_event_with_a_negative_outcome(stack: Stack) -> None:
    with stack.agents.client() as http:
        accepted = dispatch(http, "tasks", {"fail": "the disk is full", "steps": 0})
        events = read_events(http, accepted["taskId"])
        assert [e["event"] for e in events] == ["queued", "dispatched", "started", "error"]
        error = events[-1]["data"]["error"]
        assert error == {"code": "E_WORKER", "message": "the disk is full", "retryable": False}
        assert events[-1]["data"]["commitmentAction"] == "task.failed"
    history = session_history(stack, accepted["sessionId"])
    assert [e.message_type for e in history][-2:] == ["TaskFail", "Commitment"]


def test_a_declined_task_is_an_error(stack: Stack) -> None:
    with stack.agents.client() as http:
        accepted = dispatch(http, "tasks", {"decline": "not my kind of work"})
        events = read_events(http, accepted["taskId"])
        assert [e["event"] for e in events] == ["queued", "dispatched", "error"]
        assert events[-1]["data"]["error"]["code"] == "TASK_REJECTED"
        assert "not my kind of work" in events[-1]["data"]["error"]["message"]


def test_a_worker_crash_is_an_error_event_and_the_session_is_cancelled(stack: Stack) -> None:
    with stack.agents.client() as http:
        accepted = dispatch(http, "crashy", {"crash": True})
        events = read_events(http, accepted["taskId"])
        assert [e["event"] for e in events] == ["queued", "dispatched", "started", "error"]
        error = events[-1]["data"]["error"]
        assert error["code"] == "WORKER_CRASHED"
        assert "exited with code 3" in error["message"]
        # The pool restarts the worker, and the next task is served.
        wait_until(lambda: pool_row(http, "crashy")["workers"] == 1, what="crashy to restart")
        again = dispatch(http, "crashy", {"steps": 1})
        assert wait_for_status(http, again["taskId"], "completed", "error")["status"] == "completed"
    assert runtime_session(stack, accepted["sessionId"]).state == envelope_pb2.SESSION_STATE_CANCELLED


def test_the_cap_holds_under_load_and_a_full_queue_is_refused(stack: Stack, tmp_path: Path) -> None:
    gate = tmp_path / "open"
    with stack.agents.client() as http:
        ids = [dispatch(http, "load", {"gate": str(gate), "steps": 0, "n": n})["taskId"] for n in range(6)]
        # cap 2 + queueLimit 4 = 6 taken; the seventh is refused at once
        refused = http.post("/dispatch", json={"pool": "load", "task": {"title": "one too many"}})
        assert refused.status_code == 429
        assert refused.json()["errorCode"] == "QUEUE_FULL"
        assert refused.headers["retry-after"] == "1"

        wait_until(
            lambda: len(list(iter_journal(stack.agents, event="begin", taskId=ids[0]))) == 1, what="begin"
        )
        wait_until(
            lambda: len(list(iter_journal(stack.agents, event="begin", taskId=ids[1]))) == 1, what="begin"
        )
        statuses = [http.get(f"/dispatch/{task_id}").json()["status"] for task_id in ids]
        assert statuses[2:] == ["queued"] * 4
        row = pool_row(http, "load")
        assert (row["running"], row["queued"]) == (2, 4)

        # A queued task cancelled leaves the queue at once, and its place is free again.
        withdrawn = http.post(f"/dispatch/{ids[5]}/cancel")
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "cancelled"
        assert [e["event"] for e in read_events(http, ids[5])] == ["queued", "cancelled"]
        ids[5] = dispatch(http, "load", {"gate": str(gate), "steps": 0, "n": 6})["taskId"]
        cancelled = withdrawn.json()["taskId"]

        gate.touch()
        finished = [wait_for_status(http, task_id, "completed", "error")["status"] for task_id in ids]
        assert finished == ["completed"] * 6
    assert not list(iter_journal(stack.agents, taskId=cancelled))  # no worker ever saw it

    running, most = set(), 0
    for entry in stack.agents.journal_lines():
        if entry.get("taskId") not in ids:
            continue
        if entry["event"] == "begin":
            running.add(entry["taskId"])
            most = max(most, len(running))
        elif entry["event"] == "finish":
            running.discard(entry["taskId"])
    assert most == 2


def test_a_task_whose_session_expires_is_an_error(stack: Stack, tmp_path: Path) -> None:
    with stack.agents.client() as http:
        body = {
            "agent": "agent://tasks",
            "task": {"title": "slow", "input": {"gate": str(tmp_path / "never")}},
        }
        response = http.post("/dispatch", json={**body, "ttlMs": 1500})
        assert response.status_code == 202
        events = read_events(http, response.json()["taskId"])
        assert events[-1]["event"] == "error"
        assert events[-1]["data"]["error"]["code"] == "EXPIRED"
        assert "expired after 1500 ms" in events[-1]["data"]["error"]["message"]
        assert [e["event"] for e in events][:3] == ["queued", "dispatched", "started"]


def test_cancelling_a_running_task_cancels_its_session(stack: Stack, tmp_path: Path) -> None:
    with stack.agents.client() as http:
        accepted = dispatch(http, "tasks", {"gate": str(tmp_path / "never"), "steps": 0})
        wait_for_status(http, accepted["taskId"], "started")
        response = http.post(f"/dispatch/{accepted['taskId']}/cancel", json={"reason": "changed my mind"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        events = read_events(http, accepted["taskId"])
        assert events[-1]["event"] == "cancelled"
        assert events[-1]["data"]["reason"] == "changed my mind"
        again = http.post(f"/dispatch/{accepted['taskId']}/cancel")
        assert again.status_code == 409 and again.json()["errorCode"] == "TASK_ENDED"
    # The worker is told the session is over.
    wait_until(
        lambda: list(iter_journal(stack.agents, event="ended", sessionId=accepted["sessionId"])),
        what="macp/sessionEnded at the worker",
    )
    (ended,) = iter_journal(stack.agents, event="ended", sessionId=accepted["sessionId"])
    assert ended["state"] == "SESSION_STATE_CANCELLED"


def test_no_worker_can_take_the_task(stack: Stack) -> None:
    with stack.agents.client() as http:
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"pool": "nope"}, 404, "POOL_NOT_FOUND"),
            ({"agent": "agent://nobody"}, 404, "POOL_NOT_FOUND"),
            ({"pool": "listener"}, 409, "DISPATCH_DISABLED"),
            ({"pool": "dead"}, 503, "NO_WORKER|POOL_FAILED"),
        ]
        for target, status, codes in cases:
            response = http.post("/dispatch", json={**target, "task": {"title": "x"}})
            assert response.status_code == status, response.text
            body = response.json()
            assert body["errorCode"] in codes.split("|")
            assert body["statusCode"] == status and body["message"]


def test_a_callback_to_a_host_outside_allowed_hosts_is_refused(stack: Stack) -> None:
    """The stack allows callbacks to 127.0.0.1 only (where the other tests' receiver is)."""
    with stack.agents.client() as http:
        for url in ("http://localhost:9/x", "http://[::1]:9/x", "https://127.0.0.1.example.com/x"):
            body = {"pool": "tasks", "task": {"title": "x"}, "callback": {"url": url}}
            response = http.post("/dispatch", json=body)
            assert response.status_code == 400, response.text
            refusal = response.json()
            assert refusal["errorCode"] == "CALLBACK_HOST_NOT_ALLOWED"
            assert refusal["message"].startswith("callback.url:")


def test_bad_requests_name_the_field(stack: Stack) -> None:
    with stack.agents.client() as http:
        cases: list[tuple[Any, str]] = [
            ({"pool": "tasks"}, "task"),
            ({"pool": "tasks", "task": {"title": ""}}, "task.title"),
            ({"pool": "tasks", "task": {"title": "x", "inptu": 1}}, "task.inptu"),
            ({"pool": "tasks", "pool_id": "x", "task": {"title": "x"}}, "pool_id"),
            ({"pool": "tasks", "task": {"title": "x"}, "callback": {"url": "ftp://x"}}, "callback.url"),
            ({"pool": "tasks", "task": {"title": "x"}, "ttlMs": 0}, "ttlMs"),
            ([1, 2], "body"),
        ]
        for body, field in cases:
            response = http.post("/dispatch", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["errorCode"] == "INVALID_FIELD"
            assert response.json()["message"].startswith(f"{field}:")
        garbage = http.post("/dispatch", content=b"{not json", headers={"Content-Type": "application/json"})
        assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["message"]
        assert http.get("/dispatch/unknown").status_code == 404
        assert http.get("/dispatch/unknown/events").json()["errorCode"] == "TASK_NOT_FOUND"


def test_the_api_needs_a_key_but_the_probes_do_not(stack: Stack) -> None:
    with httpx.Client(base_url=stack.agents.url, timeout=10) as anonymous:
        refused = anonymous.post("/dispatch", json={"pool": "tasks", "task": {"title": "x"}})
        assert refused.status_code == 401 and refused.json()["errorCode"] == "UNAUTHENTICATED"
        wrong = anonymous.get("/pools", headers={"Authorization": "Bearer not-the-key-at-all"})
        assert wrong.status_code == 401
        assert anonymous.get("/healthz").json() == {"ok": True, "service": "pymacp-agents"}
        ready = anonymous.get("/readyz")
        # the "dead" pool has no worker, so the service says it is not fully ready
        assert ready.status_code == 503 and ready.json()["runtime"] == "ok"
        assert ready.json()["pools"]["tasks"]["workers"] == 2


def test_input_reaches_the_worker_as_json_text(stack: Stack) -> None:
    with stack.agents.client() as http:
        accepted = dispatch(http, "tasks", "just a string", ttlMs=60_000)
        task = wait_for_status(http, accepted["taskId"], "completed")
        assert task["result"]["output"]["echo"] == "just a string"
    history = session_history(stack, accepted["sessionId"])
    start, request = history[0], history[1]
    assert core_pb2.SessionStartPayload.FromString(start.payload).ttl_ms == 60_000
    assert task_pb2.TaskRequestPayload.FromString(request.payload).input == b'"just a string"'


def pool_row(http: httpx.Client, pool_id: str) -> dict[str, Any]:
    row: dict[str, Any] = next(p for p in http.get("/pools").json()["pools"] if p["id"] == pool_id)
    return row
